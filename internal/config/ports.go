package config

import "github.com/lvs-feedbackd/feedbackd/internal/value"

// servicesFile is the services database port names are read from (see
// value.Services); tests replace it.
var servicesFile = value.DefaultServicesFile

func services() value.Services { return value.Services{File: servicesFile} }

// ParsePort reads a port: a number from 1 to 65535, or a service name from
// /etc/services (see servicesFile) registered for proto, "tcp" or "udp",
// or for either when proto is empty (the block's protocol being itself
// invalid, so that one mistake is not reported twice).
func ParsePort(s string, proto string) (uint16, error) { return services().Port(s, proto) }
