package logging_test

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/lvs-feedbackd/feedbackd/internal/logging"
)

// The operator documentation lists the journal fields to filter by; it must
// list exactly what the handler writes.
func TestJournalFieldsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/systemd.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range logging.JournalFields {
		row := fmt.Sprintf("| %s | %s | %s |", f.Key, f.Field, f.Meaning)
		if !strings.Contains(string(doc), row) {
			t.Errorf("docs/systemd.md lacks the row %q", row)
		}
	}
}
