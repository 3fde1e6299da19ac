import type { ClientConfig } from '../config/schema.js';

/** Files a certificate-authenticated client presents (RFC 8705 §2), and the CA it trusts the server with. */
export interface ExampleClientFiles {
  readonly caFile: string;
  readonly certificateFile: string;
  readonly keyFile: string;
}

/**
 * A ready-to-paste curl command that gets a certificate-bound token for `client` (its default
 * resource, else its first, with that resource's first scope), as `tether dev` and `tether pki init`
 * print it. Indented lines, no trailing newline.
 */
export function curlTokenExample(client: ClientConfig, files: ExampleClientFiles, tokenEndpoint: string): string[] {
  const resource = client.defaultResource ?? Object.keys(client.resources)[0]!;
  return [
    `  curl --cacert ${files.caFile} \\`,
    `    --cert ${files.certificateFile} --key ${files.keyFile} \\`,
    `    -d grant_type=client_credentials -d client_id=${client.id} \\`,
    `    -d resource=${resource} -d scope=${client.resources[resource]![0]} \\`,
    `    ${tokenEndpoint}`,
  ];
}
