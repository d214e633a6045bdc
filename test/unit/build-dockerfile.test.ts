/** The Dockerfile parser, variable substitution and metadata instructions of the classic builder. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { splitStages } from '../../src/build/builder.js';
import { jsonForm, parseDockerfile } from '../../src/build/dockerfile.js';
import { applyMetadata, parseDuration, type StageVars } from '../../src/build/instructions.js';
import { envMap, expandWord, expandWords, keyValues } from '../../src/build/shell-words.js';

describe('Dockerfile parser', () => {
  it('reads instructions with their lines, flags, comments and continuations', () => {
    const df = parseDockerfile(
      ['# a comment', 'from --platform=linux/amd64 busybox AS base', '', 'RUN echo a \\', '  # inside', '', '    && echo b', 'COPY --chown=1:2 --from=base a b /c/', 'CMD ["sh"]'].join('\n'),
    );
    assert.deepEqual(
      df.instructions.map((i) => [i.cmd, i.line, i.args, i.flags]),
      [
        ['FROM', 2, 'busybox AS base', { platform: 'linux/amd64' }],
        ['RUN', 4, 'echo a     && echo b', {}],
        ['COPY', 8, 'a b /c/', { chown: '1:2', from: 'base' }],
        ['CMD', 9, '["sh"]', {}],
      ],
    );
  });

  it('honours the escape directive and refuses unknown instructions with their line', () => {
    const df = parseDockerfile('# escape=`\nFROM x\nRUN dir c:\\ `\n  /w');
    assert.equal(df.escape, '`');
    assert.equal(df.instructions[1]!.args, 'dir c:\\   /w');
    assert.throws(() => parseDockerfile('FROM x\n\nFOO bar'), /line 3: unknown instruction: FOO/);
    assert.throws(() => parseDockerfile('# comment only\n'), /cannot be empty/);
  });

  it('tells JSON (exec) form from shell form', () => {
    assert.deepEqual(jsonForm('["a", "b c"]'), ['a', 'b c']);
    assert.equal(jsonForm('[not json]'), undefined);
    assert.equal(jsonForm('echo [1]'), undefined);
    assert.equal(jsonForm('[1, 2]'), undefined);
  });

  it('splits stages; only ARG may come before the first FROM; stage names are checked', () => {
    const { globals, stages } = splitStages(parseDockerfile('ARG V=1\nFROM a AS one\nRUN x\nFROM one\nCMD y').instructions);
    assert.equal(globals.length, 1);
    assert.deepEqual(stages.map((s) => [s.base, s.name, s.body.length]), [['a', 'one', 1], ['one', undefined, 1]]);
    assert.throws(() => splitStages(parseDockerfile('RUN x\nFROM a').instructions), /line 1: no build stage/);
    assert.throws(() => splitStages(parseDockerfile('FROM a AS x\nFROM b AS x').instructions), /line 2: duplicate name x/);
    assert.throws(() => splitStages(parseDockerfile('FROM a AS 1bad').instructions), /invalid name for build stage/);
  });
});

describe('variable substitution', () => {
  const env = envMap(['A=one', 'EMPTY=', 'SP=a b']);

  it('expands $VAR, ${VAR} and the default/alternative forms as Docker does', () => {
    assert.equal(expandWord('$A-${A}', env), 'one-one');
    assert.equal(expandWord('${NOPE:-dflt} ${EMPTY:-dflt} ${EMPTY-dflt}', env), 'dflt dflt ');
    assert.equal(expandWord('${A:+alt}${NOPE:+alt}', env), 'alt');
    assert.equal(expandWord('${NOPE:-${A}x}', env), 'onex');
    assert.throws(() => expandWord('${NOPE:?must be set}', env), /NOPE: must be set/);
    assert.equal(expandWord('$ cost $1', env), '$ cost ');
  });

  it('keeps single quotes literal, expands in double quotes, honours the escape character', () => {
    assert.equal(expandWord(`'$A' "$A" \\$A`, env), '$A one $A');
    assert.equal(expandWord('"a\\"b"', env), 'a"b');
    assert.equal(expandWord('`$A', env, '`'), '$A');
  });

  it('splits words on unquoted blanks only (a variable with a space stays one word in quotes)', () => {
    assert.deepEqual(expandWords('x "$SP" $SP \'\'', env), ['x', 'a b', 'a', 'b', '']);
    assert.deepEqual(expandWords('  $NOPE  y', env), ['y']);
  });

  it('reads KEY=VALUE pairs and the legacy ENV form', () => {
    assert.deepEqual(keyValues('X=1 Y="two words" Z=$A', env), [['X', '1'], ['Y', 'two words'], ['Z', 'one']]);
    assert.deepEqual(keyValues('MYVAR my value $A', env, '\\', { legacy: true }), [['MYVAR', 'my value one']]);
    assert.deepEqual(keyValues('NAME OTHER=2', env, '\\', { allowBare: true }), [['NAME', undefined], ['OTHER', '2']]);
    assert.throws(() => keyValues('novalue', env), /can't find = in "novalue"/);
  });
});

describe('metadata instructions', () => {
  const vars = (): StageVars => ({ env: envMap(['P=8080']), escape: '\\', cmdSet: false });
  const ins = (cmd: string, args: string) => ({ cmd, args, flags: {}, line: 1, original: `${cmd} ${args}` });

  it('CMD and ENTRYPOINT in both forms; ENTRYPOINT clears an inherited CMD only', () => {
    const v = vars();
    const a = applyMetadata({ Cmd: ['sh'] }, ins('ENTRYPOINT', 'run.sh --flag'), v);
    assert.deepEqual(a.config.Entrypoint, ['/bin/sh', '-c', 'run.sh --flag']);
    assert.equal(a.config.Cmd, null);
    const b = applyMetadata(a.config, ins('CMD', '["x"]'), v);
    const c = applyMetadata(b.config, ins('ENTRYPOINT', '["e"]'), v);
    assert.deepEqual(c.config.Cmd, ['x']);
    assert.deepEqual(applyMetadata({ Shell: ['/bin/bash', '-xc'] }, ins('CMD', 'echo'), v).config.Cmd, ['/bin/bash', '-xc', 'echo']);
  });

  it('ENV, LABEL, EXPOSE (with ranges), VOLUME, USER, WORKDIR (relative), STOPSIGNAL', () => {
    const v = vars();
    let cfg = applyMetadata({ Env: ['A=1'] }, ins('ENV', 'A=2 B="x y"'), v).config;
    assert.deepEqual(cfg.Env, ['A=2', 'B=x y']);
    cfg = applyMetadata(cfg, ins('LABEL', 'k=v "k 2"=v2'), v).config;
    assert.deepEqual(cfg.Labels, { k: 'v', 'k 2': 'v2' });
    cfg = applyMetadata(cfg, ins('EXPOSE', '$P 53/udp 7000-7001'), v).config;
    assert.deepEqual(Object.keys(cfg.ExposedPorts ?? {}), ['8080/tcp', '53/udp', '7000/tcp', '7001/tcp']);
    cfg = applyMetadata(cfg, ins('VOLUME', '["/data", "/logs"]'), v).config;
    assert.deepEqual(Object.keys(cfg.Volumes ?? {}), ['/data', '/logs']);
    cfg = applyMetadata(cfg, ins('WORKDIR', '/app'), v).config;
    cfg = applyMetadata(cfg, ins('WORKDIR', 'sub'), v).config;
    assert.equal(cfg.WorkingDir, '/app/sub');
    assert.equal(applyMetadata(cfg, ins('USER', 'nobody:nogroup'), v).config.User, 'nobody:nogroup');
    assert.equal(applyMetadata(cfg, ins('STOPSIGNAL', 'SIGQUIT'), v).config.StopSignal, 'SIGQUIT');
    assert.throws(() => applyMetadata(cfg, ins('EXPOSE', 'http'), v), /invalid containerPort: http/);
  });

  it('HEALTHCHECK, SHELL and ONBUILD are stored as Docker stores them', () => {
    const v = vars();
    const hc = applyMetadata({}, ins('HEALTHCHECK', '--interval=30s --retries=3 CMD curl -f http://x/'), v).config.Healthcheck;
    assert.deepEqual(hc, { Test: ['CMD-SHELL', 'curl -f http://x/'], Interval: 30e9, Retries: 3 });
    assert.deepEqual(applyMetadata({}, ins('HEALTHCHECK', 'NONE'), v).config.Healthcheck, { Test: ['NONE'] });
    assert.equal(parseDuration('1m30s', 'interval'), 90e9);
    assert.throws(() => applyMetadata({}, ins('SHELL', '/bin/bash -c'), v), /JSON form/);
    assert.deepEqual(applyMetadata({}, ins('ONBUILD', 'run echo hi'), v).config.OnBuild, ['RUN echo hi']);
    assert.throws(() => applyMetadata({}, ins('ONBUILD', 'ONBUILD RUN x'), v), /isn't allowed/);
  });
});
