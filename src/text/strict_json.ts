/**
 * JSON that means one thing: `JSON.parse` keeps the last of duplicated members, so `{"a":1,"a":2}`
 * reads differently in parsers that keep the first. Input that a signer, a logger and Tether could
 * read differently is refused instead (RFC 8259 §4: names SHOULD be unique; I-JSON, RFC 7493 §2.3:
 * MUST).
 */

/** `JSON.parse`, refusing duplicated member names at any depth; throws SyntaxError. */
export function parseStrictJson(text: string): unknown {
  const value: unknown = JSON.parse(text);
  const duplicate = duplicatedMemberOf(text);
  if (duplicate !== undefined) throw new SyntaxError(`duplicated member ${JSON.stringify(duplicate)}`);
  return value;
}

/**
 * The first member name that occurs twice in one object of `text`, which must be valid JSON (the
 * scan relies on it: outside strings, only the structural characters matter).
 */
function duplicatedMemberOf(text: string): string | undefined {
  const objects: (Set<string> | undefined)[] = [];
  let atName = false;
  for (let index = 0; index < text.length; index += 1) {
    const char = text[index];
    if (char === '"') {
      let end = index + 1;
      while (text[end] !== '"') end += text[end] === '\\' ? 2 : 1;
      if (atName) {
        const name = JSON.parse(text.slice(index, end + 1)) as string;
        const names = objects.at(-1)!;
        if (names.has(name)) return name;
        names.add(name);
        atName = false;
      }
      index = end;
    } else if (char === '{') {
      objects.push(new Set());
      atName = true;
    } else if (char === '[') {
      objects.push(undefined);
      atName = false;
    } else if (char === '}' || char === ']') {
      objects.pop();
      atName = false;
    } else if (char === ',') {
      atName = objects.at(-1) !== undefined;
    }
  }
  return undefined;
}
