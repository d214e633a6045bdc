/** `kube play` manifests: parsing and planning a Pod, no daemon. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManifestError, parseManifests, planPod } from '../../src/cli/kube/manifest.js';
import { podManifest } from '../helpers/kube.js';

describe('kube manifests', () => {
  it('maps command/args, env, ports, emptyDir and hostPath', () => {
    const [m] = parseManifests(podManifest('/srv/x', 18093), 'kp.yaml');
    const plan = planPod(m!, 'io.hyperbox.pod');
    assert.deepEqual(plan.pod.PortBindings, { '8080/tcp': [{ HostIp: '', HostPort: '18093' }] });
    assert.deepEqual(plan.emptyDirs, ['kp-shared']);
    assert.deepEqual(plan.init.map((c) => c.name), ['kp-init']);
    const client = plan.containers.find((c) => c.name === 'kp-client')!;
    assert.deepEqual(client.body.Entrypoint, ['sh', '-c']);
    assert.equal((client.body.Cmd as string[]).length, 1);
    assert.deepEqual(client.body.Env, ['GREETING=hello']);
    assert.deepEqual((client.body.HostConfig as { Binds: string[] }).Binds, ['/srv/x:/out', 'kp-shared:/data']);
    const web = plan.containers.find((c) => c.name === 'kp-web')!;
    assert.deepEqual((web.body.HostConfig as { Binds: string[]; RestartPolicy: unknown }).Binds, ['kp-shared:/data:ro']);
    assert.deepEqual((web.body.HostConfig as { RestartPolicy: unknown }).RestartPolicy, { Name: 'no', MaximumRetryCount: 0 });
  });

  it('rejects what it cannot run, saying where', () => {
    assert.throws(() => parseManifests('kind: Deployment\napiVersion: apps/v1\n', 'd.yaml'), /kind "Deployment" is not supported/);
    assert.throws(() => parseManifests('apiVersion: v1\nkind: Pod\nmetadata: {name: Bad_Name}\nspec: {containers: [{name: a, image: busybox}]}\n', 'p.yaml'), /metadata\.name/);
    assert.throws(() => parseManifests('apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: []}\n', 'p.yaml'), /spec\.containers/);
    assert.throws(() => parseManifests('a: [unclosed\n', 'p.yaml'), ManifestError);
    const [m] = parseManifests('apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: a, image: busybox, volumeMounts: [{name: nope, mountPath: /x}]}]}\n', 'p.yaml');
    assert.throws(() => planPod(m!, 'l'), /volume "nope"/);
  });
});
