// JSON.parse keeps the last of duplicate keys silently; the safetensors reference implementation
// rejects them (two tensors with one name would make the file ambiguous). This scanner walks
// already-valid JSON text and reports the first key that appears twice in one object.

export function findDuplicateKey(text: string): { key: string; path: string } | null {
  const stack: Array<{ keys: Set<string> | null; path: string; lastKey: string }> = [];
  let i = 0;
  const n = text.length;
  while (i < n) {
    const c = text[i];
    if (c === '"') {
      const start = i;
      i++;
      while (i < n && text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
      i++;
      const top = stack[stack.length - 1];
      if (top && top.keys) {
        let j = i;
        while (j < n && (text[j] === ' ' || text[j] === '\t' || text[j] === '\n' || text[j] === '\r')) j++;
        if (text[j] === ':') {
          const key = JSON.parse(text.slice(start, i)) as string;
          if (top.keys.has(key)) return { key, path: top.path };
          top.keys.add(key);
          top.lastKey = key;
        }
      }
      continue;
    }
    if (c === '{' || c === '[') {
      const parent = stack[stack.length - 1];
      const path = parent ? (parent.path ? `${parent.path}.${parent.lastKey}` : parent.lastKey) : '';
      stack.push({ keys: c === '{' ? new Set() : null, path, lastKey: '' });
    } else if (c === '}' || c === ']') {
      stack.pop();
    }
    i++;
  }
  return null;
}
