package master

import (
	"os"
	"testing"
)

// TestMain lets make unit run the package's tests a second time with the
// other way of polling (FEEDBACKD_TEST_POLLER=epoll): both run every
// session test, not only those written for the poller.
func TestMain(m *testing.M) {
	if p := os.Getenv("FEEDBACKD_TEST_POLLER"); p != "" {
		defaultPoller = p
	}
	os.Exit(m.Run())
}
