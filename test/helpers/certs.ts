/** Test certificates (openssl): a CA, a server certificate for 127.0.0.1 and a client certificate. */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

/** A CA, a server certificate for 127.0.0.1 and a client certificate, with openssl. */
export function makeCerts(dir: string): void {
  const ossl = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
  ossl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca-key.pem', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=hyperbox test CA']);
  for (const [name, ext] of [
    ['server', 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth'],
    ['client', 'extendedKeyUsage=clientAuth'],
  ] as const) {
    fs.writeFileSync(path.join(dir, `${name}.ext`), `${ext}\n`);
    ossl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}-key.pem`, '-out', `${name}.csr`, '-subj', `/CN=${name}`]);
    ossl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca-key.pem', '-CAcreateserial', '-out', `${name}-cert.pem`, '-days', '2', '-extfile', `${name}.ext`]);
  }
  // The layout the docker CLI reads from DOCKER_CERT_PATH.
  const client = path.join(dir, 'client');
  fs.mkdirSync(client);
  fs.copyFileSync(path.join(dir, 'ca.pem'), path.join(client, 'ca.pem'));
  fs.copyFileSync(path.join(dir, 'client-cert.pem'), path.join(client, 'cert.pem'));
  fs.copyFileSync(path.join(dir, 'client-key.pem'), path.join(client, 'key.pem'));
}
