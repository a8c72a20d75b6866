// Sends one call of each type with the official Segment Node SDK (@segment/analytics-node) to a collector.
// Usage: node send_with_sdk.mjs HOST WRITE_KEY USER_ID   (HOST like http://127.0.0.1:8088)
// Prints one JSON line: {"sent": N, "failed": [errors]}.
import { Analytics } from '@segment/analytics-node';

const [host, writeKey, userId] = process.argv.slice(2);
if (!host || !writeKey || !userId) {
  console.error('usage: node send_with_sdk.mjs HOST WRITE_KEY USER_ID');
  process.exit(2);
}
const analytics = new Analytics({ writeKey, host, flushInterval: 200, maxEventsInBatch: 4, maxRetries: 3 });
const failed = [];
analytics.on('error', (err) => failed.push(String(err?.reason ?? err?.message ?? err)));

const anonymousId = `${userId}-device`;
const context = { ip: '203.0.113.50', page: { url: 'https://shop.example/cart', path: '/cart' } };
analytics.page({ anonymousId, name: 'Cart', properties: { path: '/cart' }, context });
analytics.identify({ userId, anonymousId, traits: { email: `${userId}@example.com`, plan: 'pro' } });
analytics.track({
  userId,
  anonymousId,
  event: 'Order Completed',
  properties: { order_id: `${userId}-order`, revenue: 42.5, currency: 'USD' },
  context,
});
analytics.screen({ userId, name: 'Home', properties: { variant: 'b' } });
analytics.group({ userId, groupId: `${userId}-team`, traits: { name: 'Team' } });
analytics.alias({ userId, previousId: anonymousId });
await analytics.closeAndFlush({ timeout: 20000 });
console.log(JSON.stringify({ sent: 6, failed }));
process.exit(failed.length ? 1 : 0);
