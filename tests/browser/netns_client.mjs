/**
 * heartwire.js in Chromium as one client of the half-open tests (crates/heartwire-cli/tests/
 * half_open.rs), which run this script inside the clients' network namespace:
 *
 *     ip netns exec NS node tests/browser/netns_client.mjs http://10.77.0.1:8080
 *
 * It starts Chromium (the harness's launch, fresh profile), opens the demo page served by the
 * heartwire server at ORIGIN and waits until its client is open, then prints one JSON line per
 * event on stdout: {"state":"browser","pgid":N} (Chromium's process group, for the test to
 * freeze or kill), {"state":"open"}, then every state the page's client enters, as it enters
 * it ({"state":"reconnecting"} once it has declared the server dead). When stdin closes it
 * closes the browser and exits.
 */
import { launchBrowser, openDemo } from './harness.mjs';

const origin = process.argv[2];
if (!origin) {
  process.stderr.write('usage: node tests/browser/netns_client.mjs ORIGIN\n');
  process.exit(2);
}

const report = (event) => process.stdout.write(`${JSON.stringify(event)}\n`);

const browser = await launchBrowser();
let closing = false;
const finish = async (code) => {
  if (closing) return;
  closing = true;
  await browser.close().catch(() => {});
  process.exit(code);
};
process.stdin.on('end', () => finish(0));
process.stdin.resume();

try {
  report({ state: 'browser', pgid: browser.pgid });
  const page = await openDemo(browser.context, origin, 'netns');
  await page.exposeFunction('reportState', (state) => report({ state }));
  await page.evaluate(() => {
    window.heartwire.addEventListener('state', (event) => window.reportState(event.state));
  });
  report({ state: 'open' });
} catch (error) {
  process.stderr.write(`netns_client.mjs: ${error.stack ?? error}\n`);
  await finish(1);
}
