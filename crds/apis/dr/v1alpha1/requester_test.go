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
	want := []string(nil) // approve and skip are not decisions (yet)
	if got := ChangedAnnotations(map[string]string{AnnotationCancel: "false"}, after); strings.Join(got, ",") != AnnotationCancel {
		t.Errorf("ChangedAnnotations = %v, want the cancel", got)
	}
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

// TestDecisionsFit: the bounds of the list, and the room every other decision leaves for a
// cancel of the largest user admitted. "approve" stands for a later, non-reserved decision.
func TestDecisionsFit(t *testing.T) {
	at := metav1.NewTime(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC))
	// The largest user record admitted (MaxRequesterBytes), and the largest decision value.
	huge := Requester{Username: "carol", Groups: []string{""}}
	huge.Groups[0] = strings.Repeat("g", MaxRequesterBytes-len(huge.Encode()))
	if n := len(huge.Encode()); n != MaxRequesterBytes {
		t.Fatalf("the huge user's record is %d bytes", n)
	}
	small := Requester{Username: "bob"}
	approve := func(who Requester) Decision { // a value JSON escapes to six times its size
		return Decision{User: who, Annotation: GroupName + "/approve", Value: strings.Repeat("\x00", MaxDecisionValueBytes), Time: at}
	}
	cancel := Decision{User: huge, Annotation: AnnotationCancel, Value: "true", Time: at}
	if n := len(EncodeDecisions([]Decision{cancel})); n > DecisionReserveBytes {
		t.Fatalf("a cancel of the largest user is %d bytes, over the reserve of %d", n, DecisionReserveBytes)
	}

	// Fill the list with other decisions, as far as they may go.
	var list []Decision
	for {
		next := append(list, approve(huge))
		if DecisionsFit(next, len(list)) != "" {
			break
		}
		list = next
	}
	if got := DecisionsFit(append(list, approve(small)), len(list)); got == "" && len(EncodeDecisions(append(list, approve(small)))) > MaxDecisionsBytes-DecisionReserveBytes {
		t.Errorf("another decision took the reserve")
	}
	// A cancel of the largest user still fits.
	if got := DecisionsFit(append(list, cancel), len(list)); got != "" {
		t.Errorf("a cancel after %d other decisions (%d bytes): %s", len(list), len(EncodeDecisions(list)), got)
	}
	// So it does after 99 small ones.
	list = nil
	for range MaxDecisions - 1 {
		list = append(list, Decision{User: small, Annotation: GroupName + "/approve", Value: "yes", Time: at})
	}
	if got := DecisionsFit(append(list, approve(small)), len(list)); !strings.Contains(got, "over the limit of 99 entries") {
		t.Errorf("a 100th other decision: %q", got)
	}
	if got := DecisionsFit(append(list, cancel), len(list)); got != "" {
		t.Errorf("a cancel after 99 other decisions: %s", got)
	}
	// The hard bounds hold for a cancel too.
	for range 2 {
		list = append(list, cancel)
	}
	if got := DecisionsFit(list, len(list)-1); !strings.Contains(got, "over the limit of 100 entries or 65536 bytes") {
		t.Errorf("a cancel over the hard bounds: %q", got)
	}
}
