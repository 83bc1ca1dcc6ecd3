'use strict'
// Shared by the two KafkaJS clients: argument parsing and the client factory.

const { Kafka, logLevel } = require('kafkajs')

// `--name value` or `--name=value`; falls back to the environment variable, then to the default.
function option (name, env, fallback) {
  const argv = process.argv.slice(2)
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === `--${name}` && i + 1 < argv.length) return argv[i + 1]
    if (argv[i].startsWith(`--${name}=`)) return argv[i].slice(name.length + 3)
  }
  if (env && process.env[env] !== undefined && process.env[env] !== '') return process.env[env]
  if (fallback === undefined) fail(`missing --${name}${env ? ` (or ${env})` : ''}`)
  return fallback
}

function intOption (name, env, fallback) {
  const raw = option(name, env, fallback === undefined ? undefined : String(fallback))
  const n = Number(raw)
  if (!Number.isInteger(n) || n < 0) fail(`--${name} must be a non-negative integer, got ${raw}`)
  return n
}

// fraudstream's broker setting is `kafka://host:port[,host:port]`; KafkaJS wants a list of `host:port`.
function brokerList (raw) {
  return raw.split(',').map(b => b.trim().replace(/^kafka:\/\//, '')).filter(Boolean)
}

function client (clientId, brokers) {
  return new Kafka({
    clientId,
    brokers: brokerList(brokers),
    logLevel: logLevel.WARN,
    connectionTimeout: 3000,
    requestTimeout: 30000,
    retry: { initialRetryTime: 100, retries: 8 }
  })
}

function fail (message) {
  process.stderr.write(`${require('path').basename(process.argv[1])}: ${message}\n`)
  process.exit(2)
}

module.exports = { option, intOption, client, fail }
