// Package routing decides which route a request belongs to: it compiles
// the routes' match conditions (Rule) into an Index whose Lookup answers
// the first matching route in config order, the rule docs/SPEC.md gives,
// without scanning the table; and it puts a request into the form
// matching expects, checked and normalised once before the lookup:
// CheckHost refuses a Host that is no host, RequestHost reduces a valid
// one to the name routes compare, NeedsClean and CleanURLPath normalise
// the path that is both routed and forwarded.
//
// The package knows nothing of upstreams, admission or configs: a caller
// keeps its routes in a slice in the order it gave the rules, and indexes
// it with the position Lookup returns.
package routing
