package bulkhead

import (
	"fmt"
	"math"
)

// Class is a request's criticality (Google SRE's criticality, with the
// same three tiers). A freed slot goes to the oldest waiter of the highest
// class queued, and lower classes are refused earlier as the queue fills
// (Options.ShedAt), so that under overload the sheddable traffic absorbs
// the rejections before default and critical traffic see any.
type Class uint8

// The classes, highest first: a lower value is served first.
const (
	ClassCritical  Class = 0
	ClassDefault   Class = 1
	ClassSheddable Class = 2
)

// numClasses sizes the per-class arrays; Class values index them.
const numClasses = 3

// String returns the name used in config and metrics: "critical",
// "default" or "sheddable".
func (c Class) String() string {
	switch c {
	case ClassCritical:
		return "critical"
	case ClassDefault:
		return "default"
	case ClassSheddable:
		return "sheddable"
	}
	return fmt.Sprintf("Class(%d)", uint8(c))
}

// checkClass panics on a Class outside the three defined: admission maps
// config strings to classes at load, so reaching here with another is a bug.
func checkClass(c Class) {
	if c >= numClasses {
		panic(fmt.Sprintf("bulkhead: invalid %v", c))
	}
}

// shedDepth turns ShedAt[c] into the queue depth at or above which a
// request of class c that would have to wait is refused: the smallest
// integer depth d with d/maxDepth >= at, that is ceil(at·maxDepth). The
// 1e-9 slack absorbs the representation error of the fraction (0.7·10 is
// 7.000000000000001 in float64, which must still give 7, not 8). Zero
// means 1.0: refused only when the queue is full. Computed once in
// NewWithOptions, so the check per request is one integer comparison.
func shedDepth(at float64, maxDepth int) int {
	if at == 0 {
		return maxDepth
	}
	d := int(math.Ceil(at*float64(maxDepth) - 1e-9))
	return min(max(d, 0), maxDepth)
}
