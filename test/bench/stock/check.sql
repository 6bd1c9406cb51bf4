-- Oversell and invariant checks, run after every benchmark run.  Prints one
-- line per problem; no output means everything holds.
SELECT 'pacelc.verify(): ' || problem || ' ' || coalesce(sku, '') || ' ' || detail
  FROM pacelc.verify()
UNION ALL
-- pacelc: units sold (confirmed) + on_hand = stocked, held within on_hand.
SELECT format('pacelc %s: stocked %s, on_hand %s + sold %s, held %s',
			  b.sku, b.stocked, s.on_hand, r.sold, s.held)
  FROM bench_stocked b
  JOIN pacelc.stock s USING (sku)
  LEFT JOIN LATERAL (SELECT coalesce(sum(qty), 0) AS sold FROM pacelc.reservations r
					  WHERE r.sku = b.sku AND r.state = 'confirmed') r ON true
 WHERE s.on_hand + r.sold <> b.stocked OR s.held < 0 OR s.held > s.on_hand
	OR r.sold + s.held > b.stocked
UNION ALL
-- plain designs: available + orders = stocked, never negative.
SELECT format('plain %s: stocked %s, available %s + ordered %s',
			  b.sku, b.stocked, p.available, o.ordered)
  FROM bench_stocked b
  JOIN bench_stock p USING (sku)
  LEFT JOIN LATERAL (SELECT coalesce(sum(qty), 0) AS ordered FROM bench_orders o
					  WHERE o.sku = b.sku) o ON true
 WHERE p.available + o.ordered <> b.stocked OR p.available < 0 OR o.ordered > b.stocked;
