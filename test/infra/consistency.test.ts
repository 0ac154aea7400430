// infra/ against the code it deploys, without building an image: compose and Kubernetes files
// parse; every `chorus` command and flag they use is one the real CLI lists in --help; every
// environment variable they set is read by something (the code, the image's entry point, the NATS
// config); ports and probes agree with the coordinator's defaults and with each other; tokens are
// referenced as secrets, never written into the files.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { ROOT } from '../cluster/helpers.ts';

const INFRA = join(ROOT, 'infra');
type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

function walk(dir: string, ext: RegExp): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const full = join(dir, name);
    if (statSync(full).isDirectory()) out.push(...walk(full, ext));
    else if (ext.test(name)) out.push(full);
  }
  return out;
}

function yamlDocs(file: string): Obj[] {
  const docs = parseAllDocuments(readFileSync(file, 'utf8'), { merge: true });
  for (const d of docs) assert.equal(d.errors.length, 0, `${relative(ROOT, file)}: ${d.errors.join('; ')}`);
  return docs.map((d) => d.toJS({ maxAliasCount: 100 }) as Obj).filter(Boolean);
}

/** `chorus <cmd> --help` of the real CLI: the commands, and each command's long flags. */
interface Cli {
  commands: Set<string>;
  flags: Map<string, Set<string>>;
  help: Map<string, string>;
}

function cliHelp(args: string[]): string {
  return execFileSync(process.execPath, [join(ROOT, 'bin/chorus.mjs'), ...args, '--help'], {
    encoding: 'utf8',
    env: { ...process.env, CHORUS_QUIET_BACKEND: '1' },
  });
}

function loadCli(): Cli {
  const root = cliHelp([]);
  const commands = new Set([...root.split('Commands:')[1].matchAll(/^ {2}([a-z][a-z-]*)/gm)].map((m) => m[1]));
  const flags = new Map<string, Set<string>>();
  const help = new Map<string, string>();
  for (const cmd of ['coordinator', 'worker']) {
    const text = cliHelp([cmd]);
    help.set(cmd, text);
    flags.set(cmd, new Set([...text.matchAll(/(?:^|[\s,])(--[a-z][a-z0-9-]*)/g)].map((m) => m[1])));
  }
  return { commands, flags, help };
}

/** Every variable name the code reads (process.env.X / process.env['X']). */
function envReadByCode(): Set<string> {
  const names = new Set<string>();
  for (const dir of ['bin', 'cli', 'coordinator', 'worker', 'shared', 'scripts'])
    for (const f of walk(join(ROOT, dir), /\.(ts|mjs|js)$/)) {
      const text = readFileSync(f, 'utf8');
      for (const m of text.matchAll(/process\.env(?:\.([A-Z_][A-Z0-9_]*)|\[['"]([A-Z_][A-Z0-9_]*)['"]\])/g))
        names.add(m[1] ?? m[2]);
    }
  return names;
}

/** The variables the image's entry point fills from VAR_FILE. */
function entrypointFileVars(): Set<string> {
  const text = readFileSync(join(INFRA, 'docker/entrypoint.sh'), 'utf8');
  const m = /^for var in ([A-Z_ ]+); do$/m.exec(text);
  assert.ok(m, 'entrypoint.sh lists the variables it reads from files');
  return new Set(m[1].trim().split(/\s+/));
}

interface Invocation {
  where: string;
  args: string[];
  env: Record<string, string>;
}

let cli: Cli;
let readByCode: Set<string>;
let fileVars: Set<string>;
let compose: Obj;
let k8s: { file: string; doc: Obj }[];

before(() => {
  cli = loadCli();
  readByCode = envReadByCode();
  fileVars = entrypointFileVars();
  compose = yamlDocs(join(INFRA, 'compose.yaml'))[0];
  k8s = walk(join(INFRA, 'k8s'), /\.ya?ml$/).flatMap((file) => yamlDocs(file).map((doc) => ({ file, doc })));
});

const isChorusImage = (image: unknown) => typeof image === 'string' && /^chorus(-gpu)?(:|$)/.test(image);

function composeInvocations(): Invocation[] {
  return Object.entries(compose.services as Obj)
    .filter(([, s]) => isChorusImage(s.image))
    .map(([name, s]) => {
      assert.ok(Array.isArray(s.command), `compose ${name}: command in exec form (a list)`);
      return { where: `compose ${name}`, args: s.command.map(String), env: s.environment ?? {} };
    });
}

/** Containers of every workload, patch and component under infra/k8s (partial ones from patches too). */
function k8sContainers(): { where: string; c: Obj; pod: Obj; doc: Obj }[] {
  const out: { where: string; c: Obj; pod: Obj; doc: Obj }[] = [];
  for (const { file, doc } of k8s) {
    const pod = doc?.spec?.template?.spec;
    for (const c of pod?.containers ?? [])
      out.push({ where: `${relative(INFRA, file)} ${doc.metadata?.name}/${c.name}`, c, pod, doc });
  }
  return out;
}

function k8sInvocations(): Invocation[] {
  return k8sContainers()
    .filter(({ c }) => Array.isArray(c.args))
    .map(({ where, c }) => ({
      where,
      args: c.args.map(String),
      env: Object.fromEntries((c.env ?? []).map((e: Obj) => [e.name, e.value ?? e.valueFrom])),
    }));
}

function dockerfiles(): { file: string; text: string }[] {
  return walk(join(INFRA, 'docker'), /^Dockerfile/).map((file) => ({ file, text: readFileSync(file, 'utf8') }));
}

function dockerCmd(text: string): string[] {
  const m = /^CMD (\[.*\])$/m.exec(text);
  assert.ok(m, 'Dockerfile has an exec-form CMD');
  return JSON.parse(m[1]);
}

function allInvocations(): Invocation[] {
  return [
    ...composeInvocations(),
    ...k8sInvocations(),
    ...dockerfiles().map(({ file, text }) => ({ where: relative(ROOT, file), args: dockerCmd(text), env: {} })),
  ];
}

function flagValue(args: string[], flag: string): string | undefined {
  const i = args.indexOf(flag);
  return i >= 0 ? args[i + 1] : undefined;
}

const portOf = (addr: string) => Number(addr.slice(addr.lastIndexOf(':') + 1));

function coordinatorDefaultPort(): number {
  const m = /--listen <addr>[^"]*?\(default:\s+"([^"]+)"\)/.exec(cli.help.get('coordinator')!);
  assert.ok(m, 'coordinator --help shows the default of --listen');
  return portOf(m[1]);
}

test('compose and Kubernetes files parse, and every kustomization points at files that exist', () => {
  assert.ok(compose.services, 'compose.yaml has services');
  assert.ok(k8s.length >= 10, `infra/k8s holds the manifests (${k8s.length} documents)`);
  for (const { file, doc } of k8s) {
    if (!/kustomization\.ya?ml$/.test(file)) continue;
    for (const key of ['resources', 'components']) {
      for (const ref of doc[key] ?? [])
        assert.ok(existsSync(join(dirname(file), ref)), `${relative(ROOT, file)}: ${key} ${ref} exists`);
    }
    for (const p of doc.patches ?? [])
      assert.ok(existsSync(join(dirname(file), p.path)), `${relative(ROOT, file)}: patch ${p.path} exists`);
  }
  // Compose mounts the same NATS config the failover test runs.
  assert.equal(compose.configs.nats_cluster.file, './nats/cluster.conf');
  assert.ok(existsSync(join(INFRA, 'nats/cluster.conf')));
});

test('every chorus command and flag used by compose, Kubernetes and the images exists in the CLI', () => {
  const invocations = allInvocations();
  assert.ok(invocations.length >= 8, `found the chorus invocations (${invocations.length})`);
  for (const inv of invocations) {
    const [cmd, ...rest] = inv.args;
    assert.ok(cli.commands.has(cmd), `${inv.where}: \`chorus ${cmd}\` is a command of the CLI`);
    const known = cli.flags.get(cmd);
    assert.ok(known, `${inv.where}: the test knows the flags of ${cmd}`);
    for (const a of rest)
      if (a.startsWith('--'))
        assert.ok(known.has(a), `${inv.where}: \`chorus ${cmd} ${a}\` is not in \`chorus ${cmd} --help\``);
  }
});

test('every environment variable infra sets is read by the code, the entry point or the NATS config', () => {
  const natsConf = readFileSync(join(INFRA, 'nats/cluster.conf'), 'utf8');
  const check = (where: string, name: string) => {
    if (name.endsWith('_FILE')) {
      const base = name.slice(0, -'_FILE'.length);
      assert.ok(fileVars.has(base), `${where}: ${name} — entrypoint.sh does not read ${base} from a file`);
      assert.ok(readByCode.has(base), `${where}: ${base} (from ${name}) is read by no code`);
    } else assert.ok(readByCode.has(name), `${where}: ${name} is read by no code`);
  };
  for (const inv of [...composeInvocations(), ...k8sInvocations()])
    for (const name of Object.keys(inv.env)) check(inv.where, name);
  for (const [name, s] of Object.entries(compose.services as Obj)) {
    if (!/^nats-\d$/.test(name)) continue;
    for (const v of Object.keys(s.environment ?? {}))
      assert.ok(natsConf.includes(`$${v}`), `compose ${name}: ${v} is not used by infra/nats/cluster.conf`);
  }
  for (const v of fileVars) assert.ok(readByCode.has(v), `entrypoint.sh fills ${v}, which no code reads`);
  // Image ENV: ours must be read; the others belong to Node/npm and the NVIDIA container runtime.
  const external = new Set(['NODE_ENV', 'NVIDIA_VISIBLE_DEVICES', 'NVIDIA_DRIVER_CAPABILITIES']);
  for (const { file, text } of dockerfiles())
    for (const m of text.matchAll(/^ENV (.+)$/gm))
      for (const pair of m[1].split(/\s+/)) {
        const name = pair.split('=')[0];
        if (!external.has(name)) check(relative(ROOT, file), name);
      }
});

test('ports and probes agree with the coordinator defaults and with each other', () => {
  const grpcPort = coordinatorDefaultPort();
  const coordinators = allInvocations().filter((i) => i.args[0] === 'coordinator');
  assert.ok(coordinators.length >= 4);
  const httpPorts = new Set<number>();
  for (const inv of coordinators) {
    const listen = flagValue(inv.args, '--listen');
    assert.ok(listen, `${inv.where}: --listen is set (the default binds 127.0.0.1, unreachable in a container)`);
    assert.equal(portOf(listen), grpcPort, `${inv.where}: --listen ${listen} uses the default port ${grpcPort}`);
    const http = flagValue(inv.args, '--http');
    if (http) httpPorts.add(portOf(http));
  }
  assert.equal(httpPorts.size, 1, 'one metrics port everywhere');
  const [metricsPort] = httpPorts;

  // Compose: gRPC published, the dashboard and /metrics on localhost only.
  const coord = compose.services.coordinator;
  assert.ok(coord.ports.includes(`${grpcPort}:${grpcPort}`), 'compose publishes the gRPC port');
  assert.ok(coord.ports.includes(`127.0.0.1:${metricsPort}:${metricsPort}`), 'compose: metrics on 127.0.0.1');
  for (const p of coord.ports as string[])
    if (String(p).endsWith(`:${metricsPort}`)) assert.match(String(p), /^127\.0\.0\.1:/);
  for (const inv of composeInvocations().filter((i) => i.args[0] === 'worker'))
    assert.equal(flagValue(inv.args, '--coordinator'), `coordinator:${grpcPort}`, inv.where);

  // Kubernetes: container ports, probes, Service, scrape annotations, NetworkPolicy ports.
  const svc = k8s.find((d) => d.doc.kind === 'Service' && d.doc.metadata.name === 'chorus-coordinator')!.doc;
  const svcPort = (name: string) => svc.spec.ports.find((p: Obj) => p.name === name);
  assert.equal(svcPort('grpc').port, grpcPort);
  assert.equal(svcPort('metrics').port, metricsPort);
  let probes = 0;
  for (const { where, c, doc } of k8sContainers()) {
    if (c.args?.[0] === 'worker')
      assert.equal(flagValue(c.args, '--coordinator'), `${svc.metadata.name}:${grpcPort}`, where);
    if (c.name !== 'coordinator') continue;
    for (const p of c.ports ?? []) {
      if (p.name === 'grpc') assert.equal(p.containerPort, grpcPort, where);
      if (p.name === 'metrics') assert.equal(p.containerPort, metricsPort, where);
    }
    for (const probe of [c.readinessProbe, c.livenessProbe].filter(Boolean)) {
      probes++;
      if (probe.grpc) assert.equal(probe.grpc.port, grpcPort, `${where}: gRPC probe port`);
      else {
        const cmd: string[] = probe.exec.command;
        assert.equal(cmd[1], '/app/infra/docker/healthcheck.mjs', `${where}: exec probe runs the image's health check`);
        assert.equal(portOf(cmd[2]), grpcPort, `${where}: exec probe port`);
      }
    }
    const ann = doc.spec.template.metadata?.annotations;
    if (ann) {
      assert.equal(ann['prometheus.io/scrape'], 'true', where);
      assert.equal(Number(ann['prometheus.io/port']), metricsPort, `${where}: scrape port`);
      assert.equal(ann['prometheus.io/path'], '/metrics', where);
    }
  }
  assert.ok(probes >= 4, 'coordinator probes in base and TLS component');
  const policy = k8s.find((d) => d.doc.kind === 'NetworkPolicy' && d.doc.metadata.name === 'chorus-coordinator')!.doc;
  const allowed = policy.spec.ingress.flatMap((r: Obj) => r.ports.map((p: Obj) => p.port));
  assert.deepEqual([...allowed].sort(), [grpcPort, metricsPort].sort(), 'NetworkPolicy opens exactly gRPC and metrics');

  // Images: EXPOSE and the health check use the same ports.
  for (const { file, text } of dockerfiles()) {
    const expose = /^EXPOSE (.+)$/m.exec(text);
    if (expose) assert.deepEqual(expose[1].split(/\s+/).map(Number), [grpcPort, metricsPort], relative(ROOT, file));
    const health = /HEALTHCHECK[\s\S]*?CMD (\[.*\])/.exec(text);
    if (health) assert.equal(portOf(JSON.parse(health[1]).at(-1)), grpcPort, `${relative(ROOT, file)}: HEALTHCHECK`);
  }
});

test('the coordinator uses every NATS node, at the replicas the cluster has', () => {
  const natsNodes = Object.keys(compose.services).filter((n) => /^nats-\d$/.test(n));
  assert.equal(natsNodes.length, 3);
  const conf = readFileSync(join(INFRA, 'nats/cluster.conf'), 'utf8');
  const clientPort = Number(/^port: (\d+)$/m.exec(conf)![1]);
  for (const n of natsNodes) assert.match(conf, new RegExp(`nats-route://${n}:\\d+`), `cluster.conf routes to ${n}`);
  const [composeCoord] = composeInvocations().filter((i) => i.args[0] === 'coordinator');
  assert.deepEqual(
    flagValue(composeCoord.args, '--nats')!.split(','),
    natsNodes.map((n) => `nats://${n}:${clientPort}`),
  );
  const values = yamlDocs(join(INFRA, 'k8s/nats/values.yaml'))[0];
  assert.equal(values.config.jetstream.enabled, true);
  assert.equal(values.config.jetstream.fileStore.enabled, true);
  for (const inv of allInvocations().filter((i) => i.args[0] === 'coordinator' && i.args.includes('--nats'))) {
    const replicas = Number(flagValue(inv.args, '--nats-replicas'));
    assert.equal(replicas, natsNodes.length, `${inv.where}: --nats-replicas`);
    assert.equal(replicas, values.config.cluster.replicas, `${inv.where}: --nats-replicas = the Helm chart's replicas`);
  }
});

test('tokens are referenced as secrets, never written into the files', () => {
  const secretish = /TOKEN|PASSWORD|SECRET|CREDS/;
  const inlineFlags = ['--client-token', '--worker-token', '--token', '--nats-token'];
  for (const inv of allInvocations())
    for (const f of inlineFlags) assert.ok(!inv.args.includes(f), `${inv.where}: ${f} would put a token in the file`);
  // Compose: secrets are files kept out of git; token variables only point at mounted secrets.
  const ignored = readFileSync(join(ROOT, '.gitignore'), 'utf8');
  assert.match(ignored, /^infra\/secrets\/$/m, 'infra/secrets/ is ignored by git');
  for (const [name, s] of Object.entries(compose.secrets as Obj)) {
    assert.deepEqual(Object.keys(s), ['file'], `compose secret ${name} comes from a file`);
    assert.match(s.file, /^\.\/secrets\//, `compose secret ${name} lives in infra/secrets/`);
  }
  for (const [name, s] of Object.entries(compose.services as Obj))
    for (const [k, v] of Object.entries((s.environment ?? {}) as Obj)) {
      if (!secretish.test(k)) continue;
      assert.ok(k.endsWith('_FILE'), `compose ${name}: ${k} must come from a secret file (${k}_FILE)`);
      const secret = String(v).replace('/run/secrets/', '');
      assert.ok(
        String(v).startsWith('/run/secrets/') && s.secrets?.includes(secret),
        `compose ${name}: ${k}=${v} is a secret it mounts`,
      );
    }
  // Kubernetes: no Secret with data in the files; token variables point into a mounted secret volume.
  for (const { file, doc } of k8s)
    if (doc.kind === 'Secret')
      assert.ok(!doc.data && !doc.stringData, `${relative(ROOT, file)}: Secret ${doc.metadata.name} inlines data`);
  for (const { where, c, pod } of k8sContainers())
    for (const e of c.env ?? []) {
      if (!secretish.test(e.name)) continue;
      if (e.valueFrom) {
        assert.ok(e.valueFrom.secretKeyRef, `${where}: ${e.name} from a Secret`);
        continue;
      }
      assert.ok(e.name.endsWith('_FILE'), `${where}: ${e.name} is inlined`);
      const mount = (c.volumeMounts ?? []).find((m: Obj) => e.value.startsWith(`${m.mountPath}/`));
      assert.ok(mount, `${where}: ${e.name}=${e.value} lies in a mounted volume`);
      const volume = (pod.volumes ?? []).find((v: Obj) => v.name === mount.name);
      assert.ok(volume?.secret?.secretName, `${where}: ${e.name}'s volume is a Secret`);
    }
});
