/**
 * A typed use of the package, checked by `tsc --noEmit` (clients/js/tsconfig.json): what a
 * TypeScript page writes compiles, and the mistakes marked `@ts-expect-error` do not.
 */
import { Heartwire, reconnectRule, type HeartwireOptions, type HeartwireState } from 'heartwire';

interface ChatLine {
  name: string;
  text: string;
}

const options: HeartwireOptions = {
  token: async () => 'a-token',
  backoffCapMs: 10_000,
  maxAttempts: 20,
  shared: true,
  storage: null,
};
const hw = new Heartwire(['wss://a.example/ws', 'wss://b.example/ws'], options);

const stop: () => void = hw.subscribe<ChatLine>('room:lobby', (line, { seq, channel }) => {
  const shown: string = `${channel} #${seq} ${line.name}: ${line.text}`;
  console.log(shown);
});

hw.addEventListener('state', (event) => {
  const state: HeartwireState = event.state;
  const waitMs: number | null = event.nextAttemptAt === null ? null : event.nextAttemptAt - Date.now();
  console.log(state, event.previous, waitMs);
});
hw.addEventListener('gap', (event) => {
  const missed: number = event.upTo - event.after;
  if (event.reason === 'epoch_changed') console.log('reload the room', missed);
});
hw.addEventListener('close', (event) => console.log(event.code, event.willReconnect));
hw.addEventListener('error', (event) => console.log(event.code, event.id ?? 'no id'));
hw.addEventListener('message', (event) => console.log(event.channel, event.seq, event.data));
hw.addEventListener('open', (event) => console.log(event.url, event.session));

async function say(text: string): Promise<number> {
  const seq: number = await hw.send('room:lobby', { name: 'ada', text } satisfies ChatLine);
  return seq;
}
void say('hi');

const health: [HeartwireState, number | null, number | null, string | null, number] = [
  hw.state, hw.rtt, hw.nextCheckAt, hw.session, hw.outboxSize,
];
console.log(health, hw.url, hw.lastHeardAt, hw.nextAttemptAt);
const sharing: 'worker' | 'leader' | 'follower' | null = hw.sharing;
for (const { id, channel, data } of hw.outbox) console.log(sharing, id, channel, data);

const rule = reconnectRule(1012, 'server restarting; retry after 1500 ms');
if (rule.retry === 'after') console.log(rule.afterMs);

hw.check();
stop();
hw.close(1000, 'bye');

// @ts-expect-error: a channel is a string
hw.send(42, 'x');
// @ts-expect-error: there is no such state
const wrong: HeartwireState = 'online';
// @ts-expect-error: the handler of `state` gets a state event, which has no `data`
hw.addEventListener('state', (event) => console.log(event.data));
// @ts-expect-error: options are checked
new Heartwire('wss://a.example/ws', { backoffBaseMs: '500' });
// @ts-expect-error: the state is read-only
hw.state = 'open';
// @ts-expect-error: `shared` is a boolean
new Heartwire('wss://a.example/ws', { shared: 'yes' });
console.log(wrong);
