#!/usr/bin/env node
'use strict'
// The card issuer's authorization platform, as a KafkaJS producer.
//
// Sends --count authorizations (topics/fraud.authorizations.json), keyed by card_id, plus one malformed
// message halfway through. Every message sent is printed to stdout as one JSON line,
// {"key": ..., "value": "<the exact value bytes as a string>", "valid": true|false}, once the broker acked it.
//
//   node produce_authorizations.js --brokers 127.0.0.1:9092 --topic fraud.authorizations --count 300 --seed 7
//
// Options fall back to BROKERS, TOPIC, COUNT, SEED and COMPRESSION (none|gzip, default none).

const { CompressionTypes, Partitioners } = require('kafkajs')
const { option, intOption, client, fail } = require('./common')

const brokers = option('brokers', 'BROKERS')
const topic = option('topic', 'TOPIC')
const count = intOption('count', 'COUNT')
const seed = intOption('seed', 'SEED', 1)
const compressionName = option('compression', 'COMPRESSION', 'none').toLowerCase()
const compression = { none: CompressionTypes.None, gzip: CompressionTypes.GZIP }[compressionName]
if (compression === undefined) fail(`--compression must be none or gzip, got ${compressionName}`)
const BATCH = 100

// mulberry32: a small seeded PRNG, so a seed always gives the same traffic.
function prng (a) {
  return function () {
    a |= 0
    a = (a + 0x6D2B79F5) | 0
    let t = Math.imul(a ^ (a >>> 15), 1 | a)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function authorizations (n, seed) {
  const rand = prng(seed)
  const pick = xs => xs[Math.floor(rand() * xs.length)]
  const cards = Math.max(5, Math.ceil(n / 8))
  const merchants = Math.max(3, Math.ceil(n / 20))
  const pad = (i, w) => String(i).padStart(w, '0')
  const now = Date.now()
  const out = []
  for (let i = 0; i < n; i++) {
    const currency = rand() < 0.8 ? 'JPY' : pick(['USD', 'EUR'])
    // Yen amounts are whole numbers (JSON integers); others have cents.
    const amount = currency === 'JPY' ? 100 + Math.floor(rand() * 80000) : Math.round(100 + rand() * 50000) / 100
    const auth = {
      tx_id: `js-${seed}-${pad(i, 6)}`,
      card_id: `js-card-${pad(Math.floor(rand() * cards), 5)}`,
      merchant_id: `js-merchant-${pad(Math.floor(rand() * merchants), 4)}`,
      amount,
      ts: now - (n - i) * 1000, // one a second, ending now: in order per card
      currency,
      mcc: pick(['5411', '5812', '5999', '4111', '6011']),
      country: rand() < 0.9 ? 'JP' : pick(['US', 'FR', 'SG']),
      channel: pick(['pos', 'pos', 'ecom', 'atm', 'moto'])
    }
    out.push({ key: auth.card_id, value: JSON.stringify(auth), valid: true })
  }
  // A broken upstream serializer: truncated JSON for a real-looking card.
  const bad = { key: 'js-card-malformed', value: `{"tx_id":"js-${seed}-malformed","card_id":"js-card-malformed","amount":`, valid: false }
  out.splice(Math.floor(n / 2), 0, bad)
  return out
}

async function main () {
  const kafka = client('issuer-authorization-platform', brokers)
  const producer = kafka.producer({
    allowAutoTopicCreation: false,
    // The Java client's murmur2 partitioner, as a JVM authorization platform would use; also silences v2's warning.
    createPartitioner: Partitioners.DefaultPartitioner
  })
  await producer.connect()
  const messages = authorizations(count, seed)
  try {
    for (let i = 0; i < messages.length; i += BATCH) {
      const batch = messages.slice(i, i + BATCH)
      await producer.send({
        topic,
        acks: -1,
        compression,
        messages: batch.map(m => ({ key: m.key, value: m.value }))
      })
      for (const m of batch) process.stdout.write(JSON.stringify(m) + '\n')
    }
  } finally {
    await producer.disconnect()
  }
  process.stderr.write(`sent ${count} authorizations and 1 malformed message to ${topic}\n`)
}

main().catch(err => {
  process.stderr.write(`produce_authorizations: ${err.stack || err}\n`)
  process.exit(1)
})
