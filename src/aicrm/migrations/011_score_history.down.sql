-- Back to 010: the score trend is dropped (the scores on the leads stay).

-- step: drop the table
DROP TABLE lead_score_history;
