// A RaptorFlow worker agent in Node.js: only the `redis` npm package, nothing of RaptorFlow's.
// Protocol: docs/agents.md. Run: REDIS_URL=redis://localhost:6379 AGENT_NAME=node_writer node worker.js
'use strict';
const { createClient } = require('redis');
const crypto = require('crypto');
const os = require('os');

const AGENT = process.env.AGENT_NAME || 'node_writer';
const PARTITIONS = parseInt(process.env.RAPTORFLOW_STREAM_PARTITIONS || '1', 10);
const BASE = `rf:stream:AgentInvoked:${AGENT}`;
const STREAMS = PARTITIONS > 1 ? [...Array(PARTITIONS).keys()].map((p) => `${BASE}:p${p}`) : [BASE];
const GROUP = 'workers';
const REPLICA = `${os.hostname()}-node-${process.pid}`;
const CLAIM_IDLE_MS = parseInt(process.env.CLAIM_IDLE_MS || '10000', 10);
let running = true;

// The agent itself: a first draft, or a revision that fixes the numbered issues.
function work(invocation) {
  const goal = invocation.stage_input.goal;
  if (invocation.draft === null) return `Notes on ${goal}.`;
  const fixed = invocation.issues.map((issue, n) => `- fixed ${n + 1}: ${issue}`).join('\n');
  return `# ${goal}\n\n${invocation.draft}\n\n## Key points\nThis covers ${goal}.\n\n` +
    `## Sources\n- Industry reports\n\n## Conclusion\nThis covers ${goal}.\n\n` +
    `Call to action: book a demo.\n\n## Changes\n${fixed}\n`;
}

function resultEnvelope(invocationEnvelope, output, error) {
  const inv = invocationEnvelope.payload;
  return {
    event_id: crypto.randomUUID(),
    type: 'AgentResult',
    schema_version: 1,
    occurred_at: new Date().toISOString(),
    correlation_id: invocationEnvelope.correlation_id,
    causation_id: invocationEnvelope.event_id,
    workspace_id: invocationEnvelope.workspace_id,
    user_id: invocationEnvelope.user_id ?? null,
    context: invocationEnvelope.context,
    payload: {
      invocation_id: inv.invocation_id,
      agent: inv.agent,
      attempt: inv.attempt,
      output: error ? null : output,
      error: error ? String(error).slice(0, 4000) : null,
      usage: { api_calls: 1, prompt_tokens: 0, completion_tokens: 0, cost_usd: 0 },
      provider: 'node',
    },
  };
}

async function handle(client, stream, id, fields) {
  let envelope;
  try {
    envelope = JSON.parse(fields.__data__);
  } catch (e) {
    await client.xAck(stream, GROUP, id); // unreadable: drop it, the deadline retries the attempt
    return;
  }
  let output = null;
  let error = null;
  try {
    output = work(envelope.payload);
  } catch (e) {
    error = e.message || String(e);
  }
  const result = resultEnvelope(envelope, output, error);
  // Answer and acknowledge together: a crash leaves the message pending, to be reclaimed.
  await client.multi()
    .xAdd(envelope.payload.reply_to, '*', { __data__: JSON.stringify(result) })
    .xAck(stream, GROUP, id)
    .exec();
}

async function main() {
  const client = createClient({ url: process.env.REDIS_URL || 'redis://localhost:6379' });
  await client.connect();
  const reader = client.duplicate(); // blocking reads on their own connection
  await reader.connect();
  for (const stream of STREAMS) {
    try {
      await client.xGroupCreate(stream, GROUP, '0', { MKSTREAM: true });
    } catch (e) {
      if (!String(e.message).includes('BUSYGROUP')) throw e;
    }
  }
  const beat = () => client.zAdd(`rf:agent:replicas:${AGENT}`, { score: Date.now(), value: REPLICA });
  await beat();
  const heartbeat = setInterval(() => beat().catch(() => {}), 5000);
  const stop = () => { running = false; };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  console.log(`node worker ${REPLICA} serving ${AGENT} on ${STREAMS.join(', ')}`);
  while (running) {
    for (const stream of STREAMS) { // what a dead replica left pending
      const claimed = await client.xAutoClaim(stream, GROUP, REPLICA, CLAIM_IDLE_MS, '0-0', { COUNT: 10 });
      for (const m of claimed.messages) if (m) await handle(client, stream, m.id, m.message);
    }
    const reply = await reader.xReadGroup(GROUP, REPLICA,
      STREAMS.map((key) => ({ key, id: '>' })), { COUNT: 10, BLOCK: 1000 });
    for (const { name, messages } of reply || []) {
      for (const m of messages) await handle(client, name, m.id, m.message);
    }
  }
  clearInterval(heartbeat);
  await client.zRem(`rf:agent:replicas:${AGENT}`, REPLICA);
  await reader.quit();
  await client.quit();
}

main().catch((e) => { console.error(e); process.exit(1); });
