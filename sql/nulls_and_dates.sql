-- NULLs, unknown values and dates.
SET timezone = 'UTC';
SET datestyle = 'ISO';

-- A NULL tenant gives no rows (the function is STRICT: no request is sent).
SELECT count(*) FROM pc_qualifications(NULL);

-- Missing or JSON-null fields are SQL NULL; unknown fields are ignored and
-- unknown qualification or status values pass through unchanged.
SELECT qualification, vetting_status IS NULL AS no_status,
       vetting_reason IS NULL AS no_reason,
       vetting_created_date IS NULL AS no_date, vetting_status
FROM pc_qualifications('11111111-0000-0000-0000-000000000012');

-- Dates: Z, +00:00, -05:00 and +05:30 offsets, 0 to 7 fraction digits.
-- The 7th digit rounds to microseconds: .6832021 -> .683202, and
-- 23:59:59.9999999Z rounds up into the next day.
SELECT qualification, vetting_created_date
FROM pc_qualifications('11111111-0000-0000-0000-000000000006')
WHERE vetting_created_date IS NOT NULL;
SELECT vetting_created_date FROM pc_qualifications('11111111-0000-0000-0000-000000000009');
SELECT vetting_created_date FROM pc_qualifications('11111111-0000-0000-0000-000000000013');
SELECT vetting_created_date FROM pc_qualifications('11111111-0000-0000-0000-000000000016');
SELECT vetting_created_date FROM pc_qualifications('11111111-0000-0000-0000-000000000015');

-- A date that is not ISO 8601 (seen with PascalCase keys) is NULL, with one
-- WARNING naming the tenant and quoting the value: a cosmetic field must not
-- fail a scheduled refresh.
SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000011');
