package adaptive

import "fmt"

// Options bound a limit. There are no tuning knobs: the algorithms' constants
// are the published defaults listed in the package documentation.
type Options struct {
	// Initial is the limit before the first sample. Min <= Initial <= Max.
	Initial int
	// Min is the lowest the limit goes; at least 1. Keep it below the
	// upstream's real capacity, or the limit cannot back off far enough.
	Min int
	// Max is the highest the limit goes.
	Max int
}

// Validate reports whether o can build a limiter. Check it when loading
// configuration; the constructors panic on options it rejects.
func (o Options) Validate() error {
	switch {
	case o.Min < 1:
		return fmt.Errorf("adaptive: min must be >= 1, got %d", o.Min)
	case o.Max < o.Min:
		return fmt.Errorf("adaptive: max %d must be >= min %d", o.Max, o.Min)
	case o.Initial < o.Min || o.Initial > o.Max:
		return fmt.Errorf("adaptive: initial %d must be within min %d and max %d", o.Initial, o.Min, o.Max)
	}
	return nil
}

func (o Options) mustValidate() {
	if err := o.Validate(); err != nil {
		panic(err.Error())
	}
}
