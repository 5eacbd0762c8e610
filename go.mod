module sluice

go 1.26.8

require (
	github.com/coder/websocket v1.8.15
	github.com/sony/gobreaker/v2 v2.4.0
	golang.org/x/time v0.16.0
	gopkg.in/yaml.v3 v3.0.1
)
