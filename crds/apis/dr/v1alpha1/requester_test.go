package v1alpha1

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestParseRequester(t *testing.T) {
	alice := Requester{Username: "alice", UID: "u-1", Groups: []string{"dr-operators", "system:authenticated"},
		Extra: map[string][]string{"scopes": {"a", "b"}}}
	tests := []struct {
		name, value, err string
	}{
		{name: "what Encode writes", value: alice.Encode()},
		{name: "just a name", value: `{"username":"bob"}`},
		{name: "unset", value: "", err: "is not set"},
		{name: "not JSON", value: "alice", err: "is not a requester record"},
		{name: "an unknown field", value: `{"username":"alice","admin":true}`, err: `unknown field "admin"`},
		{name: "no name", value: `{"uid":"u-1"}`, err: "names no user"},
		{name: "trailing data", value: `{"username":"alice"}{"username":"mallory"}`, err: "trailing data"},
		{name: "a closing bracket after it", value: `{"username":"alice"}]`, err: "trailing data"},
		{name: "a list", value: `[{"username":"alice"}]`, err: "is not a requester record"},
		{name: "too large", value: `{"username":"` + strings.Repeat("a", MaxRequesterBytes) + `"}`, err: "over the limit of 16384"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseRequester(tc.value)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseRequester(%q) = %v, want an error containing %q", tc.value, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Encode() != tc.value {
				t.Errorf("round trip: %s != %s", r.Encode(), tc.value)
			}
		})
	}
	same := alice
	same.Extra = map[string][]string{"scopes": {"a", "b"}}
	if !alice.Equal(same) || alice.Equal(Requester{Username: "alice"}) {
		t.Error("Equal compares name, UID, groups and extra")
	}
	if !(Requester{Username: "a", Groups: []string{}}).Equal(Requester{Username: "a"}) {
		t.Error("an empty list equals a missing one")
	}
}

func TestParseDecisions(t *testing.T) {
	at := metav1.NewTime(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC))
	one := []Decision{{User: Requester{Username: "alice"}, Annotation: AnnotationCancel, Value: "true", Time: at}}
	full := make([]Decision, MaxDecisions+1)
	for i := range full {
		full[i] = one[0]
	}
	tests := []struct {
		name, value, err string
		n                int
	}{
		{name: "empty", value: ""},
		{name: "an empty list", value: "[]"},
		{name: "one entry", value: EncodeDecisions(one), n: 1},
		{name: "not a list", value: `{"user":{"username":"a"}}`, err: "is not a list of decisions"},
		{name: "no user", value: `[{"user":{},"annotation":"dr.bkbcs.tencent.com/cancel","value":"true","time":"2026-03-01T10:00:00Z"}]`, err: "entry 0 names no user"},
		{name: "another annotation", value: `[{"user":{"username":"a"},"annotation":"example.com/x","value":"1","time":"2026-03-01T10:00:00Z"}]`, err: "is not a recorded"},
		{name: "the record itself", value: `[{"user":{"username":"a"},"annotation":"dr.bkbcs.tencent.com/requester","value":"1","time":"2026-03-01T10:00:00Z"}]`, err: "is not a recorded"},
		{name: "no time", value: `[{"user":{"username":"a"},"annotation":"dr.bkbcs.tencent.com/cancel","value":"true"}]`, err: "has no time"},
		{name: "too many", value: EncodeDecisions(full), err: "101 entries, over the limit of 100"},
		{name: "too large", value: "[" + strings.Repeat(" ", MaxDecisionsBytes) + "]", err: "over the limit of 65536"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ds, err := ParseDecisions(tc.value)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseDecisions = %v, want an error containing %q", err, tc.err)
				}
				return
			}
			if err != nil || len(ds) != tc.n {
				t.Fatalf("ParseDecisions = %d entries, %v; want %d", len(ds), err, tc.n)
			}
		})
	}
	if !Decided(one, AnnotationCancel, "true") || Decided(one, AnnotationCancel, "false") {
		t.Error("Decided matches annotation and value")
	}
}

func TestChangedAnnotations(t *testing.T) {
	before := map[string]string{AnnotationCancel: "true", "dr.bkbcs.tencent.com/approve": "a", "other": "1"}
	after := map[string]string{AnnotationCancel: "true", "dr.bkbcs.tencent.com/approve": "b", "dr.bkbcs.tencent.com/skip": "x",
		"other": "2", AnnotationRequester: "r", AnnotationDecisions: "[]"}
	got := ChangedAnnotations(before, after)
	want := []string{"dr.bkbcs.tencent.com/approve", "dr.bkbcs.tencent.com/skip"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("ChangedAnnotations = %v, want %v (set or changed; ours only; never the records)", got, want)
	}
}

// FuzzParseRecords: whatever a user writes into the annotations, parsing neither panics nor
// accepts a value over its bound, and what it accepts encodes back to a value it accepts.
func FuzzParseRecords(f *testing.F) {
	f.Add(`{"username":"alice","groups":["g"],"extra":{"k":["v"]}}`)
	f.Add(`[{"user":{"username":"a"},"annotation":"dr.bkbcs.tencent.com/cancel","value":"true","time":"2026-03-01T10:00:00Z"}]`)
	f.Add(`{"username":"a"}]`)
	f.Add(`[]`)
	f.Fuzz(func(t *testing.T, value string) {
		if r, err := ParseRequester(value); err == nil {
			if len(value) > MaxRequesterBytes || r.Username == "" {
				t.Fatalf("accepted %q", value)
			}
			back, err := ParseRequester(r.Encode())
			if len(r.Encode()) <= MaxRequesterBytes && (err != nil || !back.Equal(r)) {
				t.Fatalf("%q: round trip failed: %v", value, err)
			}
		}
		if ds, err := ParseDecisions(value); err == nil {
			if len(value) > MaxDecisionsBytes || len(ds) > MaxDecisions {
				t.Fatalf("accepted %q", value)
			}
			if _, err := ParseDecisions(EncodeDecisions(ds)); err != nil && len(EncodeDecisions(ds)) <= MaxDecisionsBytes {
				t.Fatalf("%q: round trip failed: %v", value, err)
			}
		}
	})
}
