/**
 * What `python -m rankflow_runtime count` prints: one result for `--spec FILE`, an array for `--specs FILE`.
 * Objects are not strict: a newer runtime may add fields.
 */
import { z } from 'zod';

export const CountOutput = z.object({
  trainable: z.number().int().nonnegative(),
  total: z.number().int().nonnegative(),
  /** The closed-form count of the method's formula, when it has one (checked against `trainable`). */
  formula: z.number().int().nonnegative().nullable().optional(),
  /** Trainable count of the final pattern, for methods that move rank during training. */
  final: z.number().int().nonnegative().optional(),
  /**
   * False when the method chooses its ranks from the weights' values (LoRD's `energy` / `ratio` rank rules):
   * the count is then an estimate (at the rank cap) and only the trained model knows its number, which the
   * run's events and result record carry. Absent: true.
   */
  exact: z.boolean().optional(),
  /** The task head's share of `trainable` (0 when frozen); absent for a model without a head. */
  head: z.number().int().nonnegative().optional(),
});
export type CountOutput = z.infer<typeof CountOutput>;

export const CountBatchOutput = z.array(CountOutput);
