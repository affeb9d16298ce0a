module github.com/revledger/revledger/bindings/go

go 1.19
