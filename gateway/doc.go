// Package gateway is the domain core of thon's inline AI gateway: API keys
// and the consumers they identify, per-consumer concurrency and token-window
// limiters (in process or shared through Redis), and OpenAI usage metering for
// JSON and server-sent-event answers.
//
// A request goes through the gateway in this order: [KeyFromRequest] and
// [Keyring.Lookup] find the [Consumer]; [EstimateRequest] sizes the request;
// [Limiter.Acquire] reserves a concurrency slot and the estimated tokens, or
// refuses before anything reaches the upstream; the answer is passed through
// while [ParseUsage] or an [SSEMeter] reads its usage; [Reservation.Settle]
// replaces the estimate by the tokens actually used and frees the slot.
//
// The package does not import Caddy; the thon Caddy module adapts it.
package gateway
