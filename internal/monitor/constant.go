package monitor

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/lvs-feedbackd/feedbackd/internal/value"
)

func init() {
	register(Kind{Name: "constant",
		Keys: []KeySpec{
			{Name: "value", Type: TypeHealth, Required: true, Help: "the health reported on every sample, 0..100"},
		},
		build: func(params map[string]string, _ Options, _ *slog.Logger) (Monitor, error) { return newConstant(params) },
	})
}

// constant reports the same configured health on every sample; useful for
// a realserver that should take a fixed share of the load, and in tests.
type constant struct{ value int }

func newConstant(params map[string]string) (*constant, error) {
	v, ok := params["value"]
	if !ok {
		return nil, fmt.Errorf("value is required")
	}
	n, err := value.Health(v)
	if err != nil {
		return nil, fmt.Errorf("value: %w", err)
	}
	return &constant{value: n}, nil
}

func (c *constant) Name() string                             { return "constant" }
func (c *constant) Measure(ctx context.Context) (int, error) { return c.value, nil }
func (c *constant) Close() error                             { return nil }
