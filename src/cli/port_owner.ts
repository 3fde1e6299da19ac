import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

/**
 * Which process listens on a TCP port, as far as this machine tells (Linux: /proc/net/tcp{,6} give
 * the listening socket's inode, /proc/<pid>/fd the process holding it). Anything unreadable (another
 * user's processes, another OS, a container boundary) means "unknown", never an error: this only
 * makes an error message more helpful.
 */

/** A process, for a message: its pid and command line (shortened). */
export interface ProcessName {
  pid: number;
  command: string | undefined;
}

/** TCP state 0A is LISTEN (include/net/tcp_states.h). */
const LISTEN = '0A';
/** Bounds the /proc walk on a machine with very many processes. */
const MAX_PROCESSES = 5_000;

export function listeningProcess(port: number, procRoot = '/proc'): ProcessName | undefined {
  const inodes = listeningInodes(port, procRoot);
  if (inodes.size === 0) return undefined;
  const pid = holderOf(inodes, procRoot);
  return pid === undefined ? undefined : { pid, command: commandLineOf(pid, procRoot) };
}

/** The command line of a process, spaces between arguments, at most 120 characters. */
export function commandLineOf(pid: number, procRoot = '/proc'): string | undefined {
  try {
    const raw = readFileSync(`${procRoot}/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ');
    if (raw === '') return undefined;
    return raw.length > 120 ? `${raw.slice(0, 117)}...` : raw;
  } catch {
    return undefined;
  }
}

/** `process 1234 (node src/main.ts dev)`, or `process 1234`. */
export function describeProcess(process: ProcessName): string {
  return `process ${process.pid}${process.command ? ` (${process.command})` : ''}`;
}

function listeningInodes(port: number, procRoot: string): Set<string> {
  const inodes = new Set<string>();
  for (const table of ['tcp', 'tcp6']) {
    let text: string;
    try {
      text = readFileSync(`${procRoot}/net/${table}`, 'utf8');
    } catch {
      continue;
    }
    // "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode"
    for (const line of text.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      const [, local, , state, , , , , , inode] = fields;
      if (!local || state !== LISTEN || !inode || inode === '0') continue;
      const hexPort = local.slice(local.lastIndexOf(':') + 1);
      if (Number.parseInt(hexPort, 16) === port) inodes.add(inode);
    }
  }
  return inodes;
}

function holderOf(inodes: Set<string>, procRoot: string): number | undefined {
  let pids: string[];
  try {
    pids = readdirSync(procRoot).filter((name) => /^\d+$/.test(name)).slice(0, MAX_PROCESSES);
  } catch {
    return undefined;
  }
  const wanted = new Set([...inodes].map((inode) => `socket:[${inode}]`));
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`${procRoot}/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        if (wanted.has(readlinkSync(`${procRoot}/${pid}/fd/${fd}`))) return Number(pid);
      } catch {
        // The descriptor closed meanwhile.
      }
    }
  }
  return undefined;
}
