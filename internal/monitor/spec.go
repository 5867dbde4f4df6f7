// Package monitor measures a realserver's health for feedbackd-agent.
//
// The original agent loaded plugins (constant.so, cpuload.so, exec.so,
// perl.so) from moduledir; here they are built in, and the names are
// accepted with or without ".so".
package monitor

import (
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/value"
)

// ValueType says how a monitor key's value is read (KeySpec.Check), by
// the config reader and by the monitor alike.
type ValueType int

const (
	TypeString   ValueType = iota // any non-empty string
	TypeHealth                    // integer 0..100
	TypeDuration                  // seconds (decimal allowed) or a Go duration such as 500ms
	TypePath                      // absolute or relative path, non-empty
	TypeCount                     // whole number 0..Max
	TypeBool                      // yes or no
	TypeChoice                    // one of Choices, in any case
	TypeURL                       // http:// or https:// URL
	TypeEndpoint                  // HOST:PORT to connect to
)

// KeySpec describes one monitor-specific key of an agent [service] block.
type KeySpec struct {
	Name     string
	Type     ValueType
	Required bool
	Help     string
	// Min is the floor of a TypeDuration key, and MinWhy what goes wrong
	// below it (for the error message).
	Min    time.Duration
	MinWhy string
	// Max is the ceiling of a TypeCount key.
	Max int
	// Choices are the words a TypeChoice key takes.
	Choices []string
}

// Check reads v as the key's value, with the grammar and the error words
// of internal/value, which the config reader (-t) and New share: a
// value one accepts the other accepts, and means the same.
func (k KeySpec) Check(v string) error {
	var err error
	switch k.Type {
	case TypeHealth:
		_, err = value.Health(v)
	case TypeDuration:
		_, err = value.Timer(v, k.Min, k.MinWhy)
	case TypeString:
		_, err = value.NonEmpty(strings.TrimSpace(v), "value")
	case TypePath:
		_, err = value.NonEmpty(strings.TrimSpace(v), "path")
	case TypeCount:
		_, err = value.Range(strings.TrimSpace(v), 0, k.Max)
	case TypeBool:
		_, err = value.Bool(strings.TrimSpace(v))
	case TypeChoice:
		_, err = value.Choice(v, k.Choices...)
	case TypeURL:
		_, err = value.HTTPURL(v)
	case TypeEndpoint:
		_, err = value.Services{}.Endpoint(v)
	default:
		err = fmt.Errorf("internal error: unknown value type %d", k.Type)
	}
	return err
}

// duration reads the key, a TypeDuration, from params: def when it is
// absent; an error naming the key when it is unusable.
func (k KeySpec) duration(params map[string]string, def time.Duration) (time.Duration, error) {
	v, ok := params[k.Name]
	if !ok {
		return def, nil
	}
	d, err := value.Timer(v, k.Min, k.MinWhy)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", k.Name, err)
	}
	return d, nil
}

// count reads a TypeCount key: def when it is absent.
func (k KeySpec) count(params map[string]string, def int) (int, error) {
	v, ok := params[k.Name]
	if !ok {
		return def, nil
	}
	n, err := value.Range(strings.TrimSpace(v), 0, k.Max)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", k.Name, err)
	}
	return n, nil
}

// boolean reads a TypeBool key: def when it is absent.
func (k KeySpec) boolean(params map[string]string, def bool) (bool, error) {
	v, ok := params[k.Name]
	if !ok {
		return def, nil
	}
	b, err := value.Bool(strings.TrimSpace(v))
	if err != nil {
		return false, fmt.Errorf("%s: %w", k.Name, err)
	}
	return b, nil
}

// choice reads a TypeChoice key: def when it is absent.
func (k KeySpec) choice(params map[string]string, def string) (string, error) {
	v, ok := params[k.Name]
	if !ok {
		return def, nil
	}
	c, err := value.Choice(v, k.Choices...)
	if err != nil {
		return "", fmt.Errorf("%s: %w", k.Name, err)
	}
	return c, nil
}

// Kind describes one built-in monitor: its name, its keys and how to
// build it. Each kind registers itself, in the file that implements it,
// so that the keys the config reader accepts and the constructor New
// calls cannot disagree.
type Kind struct {
	Name string
	Keys []KeySpec
	// build makes the monitor from its keys, which the config reader has
	// checked with the Keys above (New checks the interval itself); log
	// already names the monitor.
	build func(params map[string]string, opts Options, log *slog.Logger) (Monitor, error)
	// check, when set, checks what no single key can say: how the keys
	// go together (an http response-time below its timeout). It returns
	// the key to blame. The config reader calls it through CheckKeys, so
	// -t refuses what New would.
	check func(params map[string]string) (key string, err error)
	// members are the kinds of a combination (combine.go); nil for a
	// built-in kind.
	members []Kind
}

// CheckKeys checks how the keys of one [service] block go together, once
// each has passed its own KeySpec.Check. It returns the key to name in the
// error, "" when the error concerns the block.
func (k Kind) CheckKeys(params map[string]string) (key string, err error) {
	if len(k.members) > 0 {
		for _, m := range k.members {
			if key, err := m.CheckKeys(memberParams(m, params)); err != nil {
				return key, fmt.Errorf("%s: %w", m.Name, err)
			}
		}
		return "", nil
	}
	if k.check == nil {
		return "", nil
	}
	return k.check(params)
}

// kinds holds the registered monitors by name.
var kinds = map[string]Kind{}

// register adds a kind; it is called from the init function of the file
// that implements it. A second kind of one name is a programming error.
func register(k Kind) {
	if _, dup := kinds[k.Name]; dup || k.build == nil {
		panic("monitor: kind " + k.Name + " registered twice or without a constructor")
	}
	kinds[k.Name] = k
}

// Sampling defaults. The agent samples every monitor on its own ticker
// (interval) and answers KEEPALIVEs from the cached value, so a slow
// monitor never delays a reply (internal/agent's Sampler).
const (
	DefaultInterval = 1 * time.Second
	DefaultTimeout  = 5 * time.Second // exec and perl: below the master's keepalive-timeout

	// MinInterval is the floor of "interval": below 10 ms the period is
	// the scale of the scheduler's own delays on a loaded host, so a
	// sampler would run back to back, and cpuload's /proc/stat counts
	// (10 ms ticks) would have nothing to compare.
	MinInterval = 10 * time.Millisecond
	// MinTimeout is the floor of exec's and perl's "timeout": starting
	// /bin/sh alone takes milliseconds, tens of them on a loaded host, and
	// a get_health() call is a round trip to the perl process. Below
	// 100 ms healthy commands would be killed and the health unknown.
	MinTimeout = 100 * time.Millisecond
)

const (
	whyInterval = "shorter, the monitor would sample in a busy loop"
	whyTimeout  = "shorter, a healthy check is killed before it can answer"
)

// intervalKey is accepted by every monitor; the agent's sampler reads it
// (Interval).
var intervalKey = KeySpec{Name: "interval", Type: TypeDuration, Help: "seconds between samples (default 1)", Min: MinInterval, MinWhy: whyInterval}

// commonKeys are accepted by every monitor.
var commonKeys = []KeySpec{intervalKey}

// CanonicalName maps "cpuload.so" to "cpuload"; other names are returned unchanged.
func CanonicalName(name string) string {
	return strings.TrimSuffix(strings.TrimSpace(name), ".so")
}

// Lookup returns the monitor kind for a name given with or without ".so",
// with the common keys appended to its own.
func Lookup(name string) (Kind, bool) {
	k, ok := kinds[CanonicalName(name)]
	if !ok {
		return Kind{}, false
	}
	k.Keys = append(append([]KeySpec(nil), k.Keys...), commonKeys...)
	return k, true
}

// Names lists the built-in monitors, sorted.
func Names() []string {
	n := make([]string, 0, len(kinds))
	for k := range kinds {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}
