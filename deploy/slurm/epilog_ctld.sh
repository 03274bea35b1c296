#!/bin/sh
# Slurm EpilogSlurmctld (on the controller): sum the job's node records (from the records folder
# the agents share) into <job>.json and put a summary in the job's AdminComment, read with
# `sacct -j ID -o AdminComment`. Returns at once; the work goes on in a detached process.
# slurmctld passes no SLURM_CONF: if slurm.conf is not at the default path, set it here.
exec /usr/local/bin/joulebench slurm epilog-ctld --records-dir /shared/joulebench/jobs
