-- Every body shape Partner Center has used for the collection.
SET timezone = 'UTC';
SET datestyle = 'ISO';

-- a bare array (the current documentation and SDK)
SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000005');
-- {"qualifications": [...]}
SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000008');
-- the collection envelope {"totalCount": 1, "items": [...], "attributes": {...}}
SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000009');
-- a single object
SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000010');
-- empty collections give zero rows, not an error
SELECT count(*) FROM pc_qualifications('11111111-0000-0000-0000-000000000007');
SELECT count(*) FROM pc_qualifications('11111111-0000-0000-0000-000000000014');
-- rows come in the order the service sent them
SELECT ordinality, vetting_status, vetting_reason, vetting_created_date
FROM pc_qualifications('11111111-0000-0000-0000-000000000015') WITH ORDINALITY;
-- keys match case-insensitively: QUALIFICATION, vettingstatus, VettingReason
SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000016');
