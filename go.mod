module github.com/tethersync/tether

go 1.26.8
