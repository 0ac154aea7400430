// The generated code in shared/gen is what `npm run gen:proto` produces from proto/: regenerating
// into a temporary directory gives byte-identical files (nobody edited generated code by hand, and
// nobody changed a .proto without regenerating).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { ROOT, tmp } from './helpers.ts';

function files(dir: string): string[] {
  const out: string[] = [];
  (function walk(d: string) {
    for (const n of readdirSync(d).sort()) {
      const f = join(d, n);
      if (statSync(f).isDirectory()) walk(f);
      else out.push(relative(dir, f));
    }
  })(dir);
  return out;
}

test('regenerating the protobuf code yields the committed files', () => {
  const out = tmp('chorus-gen-');
  const r = spawnSync(process.execPath, [join(ROOT, 'scripts/gen-proto.mjs'), '--out', out], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const committed = join(ROOT, 'shared/gen');
  assert.deepEqual(files(out), files(committed));
  for (const f of files(out))
    assert.equal(
      readFileSync(join(out, f), 'utf8'),
      readFileSync(join(committed, f), 'utf8'),
      `shared/gen/${f} differs`,
    );
});
