-- sell-out: one reserve attempt on SKU 'sellout'; bench_attempt_pacelc()
-- catches PC001 and records outcome and server-side duration.
SELECT bench_attempt_pacelc('sellout');
