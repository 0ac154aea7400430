// What a JSON.parse failure may say about a file: where, never what. V8's messages quote the text
// around the error ("Unexpected token 'r', \"root:*:202\"..."), which would carry a file's content
// into job failure reasons, logs and the dashboard.
export function jsonSyntaxError(err: unknown): string {
  const m = /position (\d+)/.exec(err instanceof Error ? err.message : '');
  return m ? `not valid JSON (syntax error at character ${Number(m[1]) + 1})` : 'not valid JSON';
}
