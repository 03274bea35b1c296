#!/bin/sh
# Slurm Epilog: tell the joulebench agent this job ended here; the agent writes the job's
# record and the job's output file gets a one-line summary (written as the job's user).
# Always exits 0 within a second: a failing Epilog would drain the node.
exec /usr/local/bin/joulebench slurm epilog --socket /run/joulebench/agent.sock
