package sd

import "time"

// LoopEvery is how often a loop that feeds the watchdog must turn at
// least: often enough that pings at half the watchdog interval are never
// late, and at least once a second for the status line.
func LoopEvery(watchdog time.Duration) time.Duration {
	if watchdog > 0 && watchdog/4 < time.Second {
		return watchdog / 4
	}
	return time.Second
}
