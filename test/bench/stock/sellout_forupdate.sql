-- sell-out with the FOR UPDATE design, for comparison.
SELECT bench_attempt_forupdate('sellout');
