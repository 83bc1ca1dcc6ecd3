#!/usr/bin/env node
'use strict'
// The monitoring team's tooling, as a KafkaJS consumer in a consumer group.
//
// Reads fraud.scores from the beginning until it has seen --count distinct tx_ids, then keeps reading until
// nothing new arrived for --idle-ms (so late duplicates are seen too), and exits 0. Exits 3 at --timeout-ms
// with fewer, 4 if the consumer crashed. Prints one JSON line per message to stdout:
// {"partition": 0, "offset": "12", "key": "card-1", "value": {...the score...}}
//
//   node consume_scores.js --brokers 127.0.0.1:9092 --topic fraud.scores --count 300 --group monitoring
//
// Options fall back to BROKERS, TOPIC, COUNT, GROUP_ID, TIMEOUT_MS and IDLE_MS.

const { option, intOption, client } = require('./common')


const brokers = option('brokers', 'BROKERS')
const topic = option('topic', 'TOPIC')
const count = intOption('count', 'COUNT')
const groupId = option('group', 'GROUP_ID', `monitoring-${process.pid}`)
const timeoutMs = intOption('timeout-ms', 'TIMEOUT_MS', 60000)
const idleMs = intOption('idle-ms', 'IDLE_MS', 1000)

async function main () {
  const kafka = client('monitoring-tooling', brokers)
  const consumer = kafka.consumer({
    groupId,
    sessionTimeout: 6000,
    heartbeatInterval: 1000,
    rebalanceTimeout: 12000,
    maxWaitTimeInMs: 500,
    allowAutoTopicCreation: false
  })
  const seen = new Set()
  let messages = 0
  let lastMessage = Date.now()
  let finish
  const finished = new Promise(resolve => { finish = resolve })

  consumer.on(consumer.events.CRASH, ({ payload }) => {
    if (!payload.restart) {
      process.stderr.write(`consume_scores: consumer crashed: ${payload.error}\n`)
      finish(4)
    }
  })
  await consumer.connect()
  await consumer.subscribe({ topics: [topic], fromBeginning: true })
  await consumer.run({
    eachMessage: async ({ partition, message }) => {
      const raw = message.value === null ? null : message.value.toString('utf8')
      let value = null
      try {
        value = raw === null ? null : JSON.parse(raw)
      } catch (err) {
        process.stderr.write(`consume_scores: partition ${partition} offset ${message.offset} is not JSON: ${err.message}\n`)
      }
      const line = { partition, offset: message.offset, key: message.key === null ? null : message.key.toString('utf8'), value }
      if (value === null) line.raw = raw
      process.stdout.write(JSON.stringify(line) + '\n')
      messages += 1
      lastMessage = Date.now()
      if (value && typeof value.tx_id === 'string') seen.add(value.tx_id)
    }
  })

  const started = Date.now()
  const timer = setInterval(() => {
    const now = Date.now()
    if (seen.size >= count && now - lastMessage >= idleMs) finish(0)
    else if (now - started >= timeoutMs) {
      process.stderr.write(`consume_scores: timed out after ${timeoutMs} ms with ${seen.size} of ${count} tx_ids (${messages} messages)\n`)
      finish(3)
    }
  }, 100)

  const code = await finished
  clearInterval(timer)
  await consumer.disconnect()
  process.stderr.write(`consume_scores: ${messages} messages, ${seen.size} distinct tx_ids from ${topic}\n`)
  process.exitCode = code
}

main().catch(err => {
  process.stderr.write(`consume_scores: ${err.stack || err}\n`)
  process.exit(1)
})
