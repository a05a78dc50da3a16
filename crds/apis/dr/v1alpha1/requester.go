package v1alpha1

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Who asked: the records the admission webhook stamps (docs/admission.md) and the controller
// reads. Their values are user input until parsed: read them only with ParseRequester and
// ParseDecisions.
const (
	// AnnotationRequester records, as the JSON of a Requester, the user who asked for a run: on
	// an execution, who created it (or who set the plan trigger that made the controller create
	// it); on a plan, who set its current trigger. Stamped by the mutating admission webhook;
	// nobody may change it afterwards.
	AnnotationRequester = GroupName + "/requester"
	// AnnotationTriggerPendingRequester on a plan holds the requester of the trigger the
	// controller is turning into an execution (beside AnnotationTriggerPending), so that a newer
	// trigger cannot change whose execution it is. Written only by the controller.
	AnnotationTriggerPendingRequester = GroupName + "/trigger-pending-requester"
	// AnnotationDecisions on an execution is the append-only JSON list of Decisions: who set or
	// changed one of its dr.bkbcs.tencent.com/ annotations since it was created. Appended by the
	// mutating admission webhook (and by the controller for a plan-level trigger); the controller
	// acts only on what it records.
	AnnotationDecisions = GroupName + "/decisions"

	// AnnotationTriggerToken on an execution the controller created for a plan trigger says
	// which trigger (the plan's UID and the pending marker): a restart finding the name taken
	// checks it was its own. Written only by the controller.
	AnnotationTriggerToken = GroupName + "/trigger-token"

	// NoRequesterMessage is the message of an execution that cannot run because no requester is
	// recorded on it.
	NoRequesterMessage = "no requester recorded: the admission webhook was not called"
)

// Bounds of the records, checked before they are decoded.
const (
	// MaxRequesterBytes bounds a requester record (a user's groups and extra included).
	MaxRequesterBytes = 16 << 10
	// MaxDecisions and MaxDecisionsBytes bound an execution's decisions list.
	MaxDecisions      = 100
	MaxDecisionsBytes = 64 << 10
	// MaxDecisionValueBytes bounds the value of a decision annotation.
	MaxDecisionValueBytes = 256
	// DecisionReserveBytes is the room a decision other than a reserved one (cancel) must leave
	// in the list, with one entry: a reserved decision of a user whose record has the largest
	// size admitted (MaxRequesterBytes), its key, value, time and JSON punctuation (under 200
	// bytes), always fits.
	DecisionReserveBytes = MaxRequesterBytes + 1024
)

// DecisionAnnotations are the annotations of an execution whose changes are recorded in its
// decisions list, each set by the user who asks for it: the only dr.bkbcs.tencent.com/
// annotations a user may set on an execution. Add a decision (abort, an approval, a skip) here.
var DecisionAnnotations = []string{AnnotationCancel}

// reservedDecisions always fit in the list: the others leave room for one of them.
var reservedDecisions = []string{AnnotationCancel}

// ControllerAnnotations are the dr.bkbcs.tencent.com/ annotations of an execution besides the
// decisions: the records (checked as such) and the controller's own bookkeeping, which only the
// controller writes.
var ControllerAnnotations = []string{AnnotationRequester, AnnotationDecisions, AnnotationTriggerToken}

// DecisionsFit says why the list, of which the entries from index appended on are new, is over
// its bounds, or returns "". A new entry other than a reserved decision (cancel) must leave room
// for one more entry of DecisionReserveBytes.
func DecisionsFit(list []Decision, appended int) string {
	entries, size := MaxDecisions, MaxDecisionsBytes
	for _, d := range list[appended:] {
		if !slices.Contains(reservedDecisions, d.Annotation) {
			entries, size = MaxDecisions-1, MaxDecisionsBytes-DecisionReserveBytes
		}
	}
	if n, b := len(list), len(EncodeDecisions(list)); n > entries || b > size {
		return fmt.Sprintf("the execution's decisions list is full: %d entries and %d bytes with this change, over the limit of %d entries or %d bytes; create a new execution",
			n, b, entries, size)
	}
	return ""
}

// Requester is a user as the API server authenticated them (authentication.k8s.io/v1 UserInfo).
type Requester struct {
	Username string              `json:"username"`
	UID      string              `json:"uid,omitempty"`
	Groups   []string            `json:"groups,omitempty"`
	Extra    map[string][]string `json:"extra,omitempty"`
}

// Decision is one entry of AnnotationDecisions: User set Annotation to Value at Time.
type Decision struct {
	User       Requester   `json:"user"`
	Annotation string      `json:"annotation"`
	Value      string      `json:"value"`
	Time       metav1.Time `json:"time"`
}

// Encode is the record's annotation value.
func (r Requester) Encode() string {
	b, _ := json.Marshal(r) // strings, lists and maps of strings always marshal
	return string(b)
}

// Equal reports whether r and o are the same authenticated user: name, UID, groups (in order)
// and extra; an empty list or map equals a missing one.
func (r Requester) Equal(o Requester) bool {
	if r.Username != o.Username || r.UID != o.UID || !slices.Equal(r.Groups, o.Groups) || len(r.Extra) != len(o.Extra) {
		return false
	}
	for k, v := range r.Extra {
		if w, ok := o.Extra[k]; !ok || !slices.Equal(v, w) {
			return false
		}
	}
	return true
}

// String is the user name, as events and tables show it.
func (r Requester) String() string { return r.Username }

// ParseRequester reads a requester record. It must be exactly what Encode writes (no unknown
// field, a user name), and at most MaxRequesterBytes.
func ParseRequester(value string) (Requester, error) {
	var r Requester
	if value == "" {
		return r, fmt.Errorf("%s is not set", AnnotationRequester)
	}
	if len(value) > MaxRequesterBytes {
		return r, fmt.Errorf("%s is %d bytes, over the limit of %d", AnnotationRequester, len(value), MaxRequesterBytes)
	}
	if err := strictDecode(value, &r); err != nil {
		return Requester{}, fmt.Errorf("%s is not a requester record: %w", AnnotationRequester, err)
	}
	if r.Username == "" {
		return Requester{}, fmt.Errorf("%s names no user", AnnotationRequester)
	}
	return r, nil
}

// RequesterOf returns the requester recorded in annotations: ok is false when there is none or
// it does not parse.
func RequesterOf(annotations map[string]string) (Requester, bool) {
	r, err := ParseRequester(annotations[AnnotationRequester])
	return r, err == nil
}

// EncodeDecisions is the decisions list's annotation value.
func EncodeDecisions(ds []Decision) string {
	if ds == nil {
		ds = []Decision{}
	}
	b, _ := json.Marshal(ds)
	return string(b)
}

// ParseDecisions reads a decisions list; an empty value is an empty list. It must be a JSON list
// of at most MaxDecisions entries and MaxDecisionsBytes, each naming a user, a
// dr.bkbcs.tencent.com/ annotation and a time.
func ParseDecisions(value string) ([]Decision, error) {
	if value == "" {
		return nil, nil
	}
	if len(value) > MaxDecisionsBytes {
		return nil, fmt.Errorf("%s is %d bytes, over the limit of %d", AnnotationDecisions, len(value), MaxDecisionsBytes)
	}
	var ds []Decision
	if err := strictDecode(value, &ds); err != nil {
		return nil, fmt.Errorf("%s is not a list of decisions: %w", AnnotationDecisions, err)
	}
	if len(ds) > MaxDecisions {
		return nil, fmt.Errorf("%s has %d entries, over the limit of %d", AnnotationDecisions, len(ds), MaxDecisions)
	}
	for i, d := range ds {
		switch {
		case d.User.Username == "":
			return nil, fmt.Errorf("%s entry %d names no user", AnnotationDecisions, i)
		case !OwnAnnotation(d.Annotation) || d.Annotation == AnnotationRequester || d.Annotation == AnnotationDecisions:
			return nil, fmt.Errorf("%s entry %d: %q is not a recorded %s/ annotation", AnnotationDecisions, i, d.Annotation, GroupName)
		case d.Time.IsZero():
			return nil, fmt.Errorf("%s entry %d has no time", AnnotationDecisions, i)
		}
	}
	return ds, nil
}

// Decided reports whether decisions record annotation set to value.
func Decided(decisions []Decision, annotation, value string) bool {
	return slices.ContainsFunc(decisions, func(d Decision) bool { return d.Annotation == annotation && d.Value == value })
}

// RecordedAnnotation reports whether a change of the annotation key is recorded in the
// decisions list: one of DecisionAnnotations.
func RecordedAnnotation(key string) bool {
	return slices.Contains(DecisionAnnotations, key)
}

// OwnAnnotation reports whether key is a dr.bkbcs.tencent.com/ annotation.
func OwnAnnotation(key string) bool {
	return strings.HasPrefix(key, GroupName+"/")
}

// ChangedAnnotations are the recorded annotations that after sets or changes from before, with
// their new values, in key order.
func ChangedAnnotations(before, after map[string]string) []string {
	var keys []string
	for _, k := range slices.Sorted(maps.Keys(after)) {
		if old, ok := before[k]; RecordedAnnotation(k) && (!ok || old != after[k]) {
			keys = append(keys, k)
		}
	}
	return keys
}

// strictDecode decodes one JSON value into v, refusing unknown fields and trailing data.
func strictDecode(value string, v any) error {
	dec := json.NewDecoder(bytes.NewReader([]byte(value)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("trailing data after the JSON value")
	}
	return nil
}
