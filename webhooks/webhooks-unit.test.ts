// Signing, the SSRF guard and the retry schedule, without a database. The guard tests send no
// traffic: a refused target is refused before any connection, which a listening server confirms.
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { Webhook } from 'standardwebhooks';
import { postWebhook } from './deliver.ts';
import { parseRetrySchedule } from './policy.ts';
import { nextDelaySeconds } from './sender.ts';
import { generateWebhookSecret, webhookHeaders } from './signing.ts';
import { checkWebhookUrl, DEFAULT_POLICY, isAddressAllowed, isForbiddenAddress } from './ssrf.ts';

test('signatures verify with the standardwebhooks reference implementation, also during rotation', () => {
  const secret = generateWebhookSecret();
  const old = generateWebhookSecret();
  assert.match(secret, /^whsec_[A-Za-z0-9+/]{43}=$/);
  const body = JSON.stringify({
    type: 'generation.completed',
    timestamp: new Date().toISOString(),
    data: {},
  });
  const now = Math.floor(Date.now() / 1000);
  const headers = webhookHeaders([secret, old], 'evt_1', now, body);
  assert.equal(headers['webhook-signature']?.split(' ').length, 2);
  assert.deepEqual(new Webhook(secret).verify(body, headers), JSON.parse(body));
  assert.deepEqual(new Webhook(old).verify(body, headers), JSON.parse(body));
  assert.throws(() => new Webhook(generateWebhookSecret()).verify(body, headers));
  assert.throws(() => new Webhook(secret).verify(`${body} `, headers));
});

// Signing uses the standardwebhooks library, so the library alone cannot vouch for it: check the
// exact header bytes against a plain node:crypto HMAC and the specification's published example.
test('signature headers match a node:crypto HMAC byte for byte, and the specification example', () => {
  const hmac = (secret: string, content: string) => {
    const key = Buffer.from(secret.slice('whsec_'.length), 'base64');
    return `v1,${createHmac('sha256', key).update(content).digest('base64')}`;
  };
  const secret = generateWebhookSecret();
  const old = generateWebhookSecret();
  const body = JSON.stringify({ type: 'generation.completed', data: { prompt: 'héllo ☃ 🎨 \u2028' } });
  const timestamp = 1_900_000_000;
  const content = `evt_2.${timestamp}.${body}`;
  assert.deepEqual(webhookHeaders([secret, old], 'evt_2', timestamp, body), {
    'webhook-id': 'evt_2',
    'webhook-timestamp': '1900000000',
    'webhook-signature': `${hmac(secret, content)} ${hmac(old, content)}`,
  });
  const example = webhookHeaders(
    ['whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'],
    'msg_p5jXN8AQM9LWM0D4loKWxJek',
    1614265330,
    '{"test": 2432232314}',
  );
  assert.equal(example['webhook-signature'], 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=');
});

test('forbidden addresses: loopback, private, link-local, metadata, ULA, mapped, unspecified, multicast', () => {
  for (const address of [
    '127.0.0.1',
    '127.255.0.9',
    '10.1.2.3',
    '172.16.0.1',
    '172.31.255.255',
    '192.168.1.1',
    '169.254.169.254',
    '0.0.0.0',
    '224.0.0.1',
    '::1',
    '[::1]',
    '::',
    'fc00::1',
    'fd12:3456::1',
    'fe80::1',
    'ff02::1',
    '::ffff:127.0.0.1',
    '::ffff:7f00:1',
    '::ffff:169.254.169.254',
    '::ffff:10.0.0.1',
  ]) {
    assert.equal(isForbiddenAddress(address), true, address);
    assert.equal(isAddressAllowed(DEFAULT_POLICY, address, address), false, address);
  }
  for (const address of ['93.184.216.34', '172.32.0.1', '8.8.8.8', '2606:4700::1111', '::ffff:8.8.8.8']) {
    assert.equal(isForbiddenAddress(address), false, address);
  }
});

test('allow-list and WEBHOOK_ALLOW_PRIVATE open forbidden addresses', () => {
  assert.equal(isAddressAllowed({ allowPrivate: true, allowedHosts: [] }, '10.0.0.1', '10.0.0.1'), true);
  const policy = { allowPrivate: false, allowedHosts: ['hooks.internal', '10.9.0.0/16', '192.168.1.5'] };
  assert.equal(isAddressAllowed(policy, 'hooks.internal', '10.0.0.1'), true);
  assert.equal(isAddressAllowed(policy, 'other', '10.9.3.4'), true);
  assert.equal(isAddressAllowed(policy, 'other', '192.168.1.5'), true);
  assert.equal(isAddressAllowed(policy, 'other', '192.168.1.6'), false);
});

test('URL check: only http(s); literal forbidden IPs refused without DNS', () => {
  assert.equal(checkWebhookUrl('ftp://example.com/', DEFAULT_POLICY).ok, false);
  assert.equal(checkWebhookUrl('file:///etc/passwd', DEFAULT_POLICY).ok, false);
  for (const url of [
    'http://127.0.0.1/',
    'http://10.0.0.1/',
    'http://172.16.0.1/',
    'http://192.168.0.1/',
    'http://169.254.169.254/latest/meta-data',
    'http://[::1]:8080/',
    'http://[fc00::1]/',
    'http://[::ffff:127.0.0.1]/',
    'http://0.0.0.0/',
  ]) {
    assert.equal(checkWebhookUrl(url, DEFAULT_POLICY).ok, false, url);
  }
  assert.equal(checkWebhookUrl('https://example.com/hook', DEFAULT_POLICY).ok, true);
  // A hostname is checked when it is resolved, at connect time.
  assert.equal(checkWebhookUrl('http://localhost/', DEFAULT_POLICY).ok, true);
});

test('a hostname resolving to loopback (localhost) is refused at connect time: no traffic', async () => {
  let requests = 0;
  let connections = 0;
  const server = createServer((_req, res) => {
    requests++;
    res.end();
  });
  server.on('connection', () => connections++);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  try {
    for (const url of [
      `http://localhost:${port}/`,
      `http://127.0.0.1:${port}/`,
      `http://[::ffff:127.0.0.1]:${port}/`,
    ]) {
      const result = await postWebhook({
        url,
        headers: {},
        body: '{}',
        timeoutMs: 2000,
        policy: DEFAULT_POLICY,
      });
      assert.equal(result.kind, 'forbidden', url);
      assert.match(result.error ?? '', /forbidden address/);
    }
    assert.equal(connections, 0);
    assert.equal(requests, 0);
    // The same target with the allow-list: delivered.
    const allowed = await postWebhook({
      url: `http://localhost:${port}/`,
      headers: {},
      body: '{}',
      timeoutMs: 2000,
      policy: { allowPrivate: false, allowedHosts: ['localhost'] },
    });
    assert.equal(allowed.kind, 'delivered');
    assert.equal(requests, 1);
  } finally {
    server.close();
  }
});

test('retry schedule: parsed from the environment, Retry-After honoured, jitter bounded', () => {
  assert.deepEqual(parseRetrySchedule('0, 5,300'), [0, 5, 300]);
  assert.equal(parseRetrySchedule('0,,5'), undefined);
  assert.equal(parseRetrySchedule('0,-1'), undefined);
  const schedule = [0, 5, 300];
  assert.equal(
    nextDelaySeconds(schedule, 2, undefined, 0.1, () => 0),
    5,
  );
  assert.equal(
    nextDelaySeconds(schedule, 2, undefined, 0.1, () => 1),
    5.5,
  );
  assert.equal(
    nextDelaySeconds(schedule, 2, 60, 0, () => 0),
    60,
  );
  assert.equal(nextDelaySeconds(schedule, 4, undefined, 0.1), undefined);
});
