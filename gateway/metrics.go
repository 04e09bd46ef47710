package gateway

import (
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// The gateway's metrics are made once for the process and registered into
// each config's registry, so that a reload keeps their values. They are
// labelled by consumer: their number is bounded by the consumers the
// organiser makes (one per user or group); requests without a valid key
// count under consumer "".
var (
	gwMetricsOnce  sync.Once
	gwRequests     *prometheus.CounterVec
	gwTokens       *prometheus.CounterVec
	gwRejections   *prometheus.CounterVec
	gwUpstreamErrs *prometheus.CounterVec
	gwInFlight     prometheus.Gauge
	gwByConsumer   sync.Map // consumer -> *consumerMetrics
)

func initMetrics() {
	gwMetricsOnce.Do(func() {
		const ns, sub = "thon", "gateway"
		gwRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "requests_total",
			Help: "Requests admitted by the AI gateway, by consumer and endpoint.",
		}, []string{"consumer", "endpoint"})
		gwTokens = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "tokens_total",
			Help: "Tokens used through the AI gateway, by consumer and kind (prompt, completion); estimated when the upstream reported none.",
		}, []string{"consumer", "kind"})
		gwRejections = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "rejections_total",
			Help: "Requests the AI gateway refused, by consumer and reason (missing_key, invalid_key, concurrency, tokens, unavailable).",
		}, []string{"consumer", "reason"})
		gwUpstreamErrs = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "upstream_errors_total",
			Help: "Admitted requests that Lemonade could not answer (unreachable, or a broken answer), by consumer.",
		}, []string{"consumer"})
		gwInFlight = prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "requests_in_flight",
			Help: "Requests the AI gateway is proxying now.",
		})
	})
}

// RegisterMetrics registers the gateway's collectors (thon_gateway_*) into
// reg, keeping those registered by an earlier handler of the same
// registry. The collectors are the process's: their values survive config
// reloads.
func RegisterMetrics(reg prometheus.Registerer) error {
	initMetrics()
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{gwRequests, gwTokens, gwRejections, gwUpstreamErrs, gwInFlight} {
		var are prometheus.AlreadyRegisteredError
		if err := reg.Register(c); err != nil && !errors.As(err, &are) {
			return err
		}
	}
	return nil
}

// consumerMetrics are one consumer's counters, looked up once.
type consumerMetrics struct {
	requests            [numEndpoints]prometheus.Counter
	prompt, completion  prometheus.Counter
	concurrency, tokens prometheus.Counter
	unavailable         prometheus.Counter
	upstreamErrors      prometheus.Counter
}

// metricsFor returns the counters of consumer.
func metricsFor(consumer string) *consumerMetrics {
	if m, ok := gwByConsumer.Load(consumer); ok {
		return m.(*consumerMetrics)
	}
	initMetrics()
	m := &consumerMetrics{
		prompt:         gwTokens.WithLabelValues(consumer, "prompt"),
		completion:     gwTokens.WithLabelValues(consumer, "completion"),
		concurrency:    gwRejections.WithLabelValues(consumer, "concurrency"),
		tokens:         gwRejections.WithLabelValues(consumer, "tokens"),
		unavailable:    gwRejections.WithLabelValues(consumer, "unavailable"),
		upstreamErrors: gwUpstreamErrs.WithLabelValues(consumer),
	}
	for ep := range numEndpoints {
		m.requests[ep] = gwRequests.WithLabelValues(consumer, endpoint(ep).String())
	}
	v, _ := gwByConsumer.LoadOrStore(consumer, m)
	return v.(*consumerMetrics)
}

// rejected counts a refusal of the limiter.
func (m *consumerMetrics) rejected(reason string) {
	switch reason {
	case "concurrency":
		m.concurrency.Inc()
	case "tokens":
		m.tokens.Inc()
	default:
		m.unavailable.Inc()
	}
}

// rejectKey counts a request refused for its key: missing_key or
// invalid_key.
func rejectKey(reason string) {
	initMetrics()
	gwRejections.WithLabelValues("", reason).Inc()
}
