// Verifies an sts-sidecar issuer token the way a relying party does, with the npm jose library
// (nobody here wrote it): the discovery document names the JWKS, createRemoteJWKSet fetches it
// and picks the key by kid, jwtVerify checks the signature, issuer and audience. Also checks that
// a token whose claims were altered is refused.
//
//   node issuer-verify.mjs ISSUER_URL CA_FILE CERT_FILE KEY_FILE TOKEN_FILE SUBJECT
//
// Gets its own token over mTLS (an empty POST), prints one JSON line: verifier, sub, kid,
// refused_forgery. NODE_EXTRA_CA_CERTS must name CA_FILE (for jose's fetch).
import { readFileSync } from 'node:fs';
import https from 'node:https';
import { createRemoteJWKSet, jwtVerify, decodeProtectedHeader } from 'jose';

const [issuer, caFile, certFile, keyFile, , subject] = process.argv.slice(2);
const ca = readFileSync(caFile);

function post(url) {
  return new Promise((resolve, reject) => {
    const req = https.request(url, {
      method: 'POST', ca, cert: readFileSync(certFile), key: readFileSync(keyFile),
      headers: { 'content-length': 0 },
    }, (res) => {
      let body = '';
      res.on('data', (c) => { body += c; });
      res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`HTTP ${res.statusCode}: ${body}`))));
    });
    req.on('error', reject);
    req.end();
  });
}

const token = await post(`${issuer}/token`);
const discovery = await (await fetch(`${issuer}/.well-known/openid-configuration`)).json();
const jwks = createRemoteJWKSet(new URL(discovery.jwks_uri));
const { payload } = await jwtVerify(token, jwks, { issuer: discovery.issuer, audience: 'sts.amazonaws.com' });
if (payload.sub !== subject) throw new Error(`sub ${payload.sub}, want ${subject}`);

const [h, p, s] = token.split('.');
const altered = JSON.parse(Buffer.from(p, 'base64url').toString());
altered.sub = 'someone:else:entirely';
const forged = [h, Buffer.from(JSON.stringify(altered)).toString('base64url'), s].join('.');
let refused = false;
try {
  await jwtVerify(forged, jwks, { issuer: discovery.issuer, audience: 'sts.amazonaws.com' });
} catch (e) {
  refused = e.code === 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED';
}
const { version } = JSON.parse(readFileSync(new URL('./node_modules/jose/package.json', import.meta.url)));
console.log(JSON.stringify({ verifier: `jose ${version}`, sub: payload.sub, kid: decodeProtectedHeader(token).kid, refused_forgery: refused }));
