// Package gateway is thon's inline AI gateway: API keys and the consumers
// they identify, per-consumer concurrency and token-window limiters (in
// process or shared through Redis), OpenAI usage metering for JSON and
// server-sent-event answers, the proxy to Lemonade Server, and the
// consumer service over the store.
//
// A request goes through the gateway in this order: [KeyFromRequest] and
// [Keyring.Lookup] find the [Consumer]; [EstimateRequest] sizes the request;
// [Limiter.Acquire] reserves a concurrency slot and the estimated tokens, or
// refuses before anything reaches the upstream; the answer is passed through
// while [ParseUsage] or an [SSEMeter] reads its usage; [Reservation.Settle]
// replaces the estimate by the tokens actually used and frees the slot.
// [Handler] does all of that for /v1/chat/completions, /v1/embeddings and
// /v1/models.
//
// A [Runtime] is the state of one database that outlives config reloads:
// keys, limiters, pending usage and the background loop. [Runtime.Start]
// puts a config's limiter in place. A [Service] (one per config, over one
// Runtime) sets the gateway up and manages consumers, their keys and their
// kilo.jsonc; its errors are [ErrOff], [ErrConflict], *store.FieldError and
// the store's.
//
// The package does not import Caddy; the thon Caddy module adapts it.
package gateway
