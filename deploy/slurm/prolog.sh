#!/bin/sh
# Slurm Prolog (PrologFlags=Alloc): tell the joulebench agent this job started here.
# Always exits 0 within a second: a failing Prolog would drain the node.
exec /usr/local/bin/joulebench slurm prolog --socket /run/joulebench/agent.sock
