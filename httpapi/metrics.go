package httpapi

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// requestMetrics counts requests by route and status and times them. The
// route label is the route pattern (/v1/ns/:ns/keys/*), never the raw path,
// so that its cardinality stays bounded whatever clients send.
type requestMetrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	// series caches the counter and histogram of each route, method and
	// status seen (a seriesKey's *series), so that a request does not look
	// its labels up in the vectors (hashing, a lock, a status string).
	series sync.Map
}

type seriesKey struct {
	route, method string
	code          int
}

type series struct {
	requests prometheus.Counter
	latency  prometheus.Observer
}

func newRequestMetrics(reg prometheus.Registerer) *requestMetrics {
	m := &requestMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ctxd_http_requests_total",
			Help: "HTTP requests answered, by route pattern, method and status code.",
		}, []string{"route", "method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ctxd_http_request_duration_seconds",
			Help:    "Time from a request's arrival to its answer, by route pattern and method.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10},
		}, []string{"route", "method"}),
	}
	reg.MustRegister(m.requests, m.latency)
	return m
}

func (m *requestMetrics) observe(c echo.Context, took time.Duration) {
	route := c.Path()
	if route == "" {
		route = "unmatched"
	}
	key := seriesKey{route: route, method: methodLabel(c.Request().Method), code: c.Response().Status}
	v, ok := m.series.Load(key)
	if !ok {
		v, _ = m.series.LoadOrStore(key, &series{
			requests: m.requests.WithLabelValues(key.route, key.method, strconv.Itoa(key.code)),
			latency:  m.latency.WithLabelValues(key.route, key.method),
		})
	}
	ser := v.(*series)
	ser.requests.Inc()
	ser.latency.Observe(took.Seconds())
}

// methodLabel is a request method as a metric label: a method HTTP
// defines, else "other". Any client may send any token as its method
// (no route takes it): each would be a new series of the counter and the
// histogram, without bound.
func methodLabel(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return method
	}
	return "other"
}

// metricsHandler serves GET /metrics from gatherer.
func metricsHandler(gatherer prometheus.Gatherer) echo.HandlerFunc {
	h := promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
	return func(c echo.Context) error {
		h.ServeHTTP(c.Response(), c.Request())
		return nil
	}
}
