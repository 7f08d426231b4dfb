/**
 * Presets: recipe fragments that reproduce the settings of the papers' main experiments. A recipe selects
 * one with `preset: <name>`; it is applied beneath the recipe (and beneath its `extends` files), so every
 * field can still be overridden. Each preset names its source; settings marked "(ours)" are choices the
 * paper leaves open.
 */

export interface Preset {
  description: string;
  source: string;
  /** A partial recipe, in the same form as YAML (shorthands allowed). */
  recipe: Record<string, unknown>;
}

/** LoRA paper, RoBERTa-base GLUE hyperparameters (per-task epochs and learning rates). */
const LORA_GLUE_TASKS: Record<string, { epochs: number; lr: number }> = {
  'glue/mnli': { epochs: 30, lr: 5e-4 },
  'glue/sst2': { epochs: 60, lr: 5e-4 },
  'glue/mrpc': { epochs: 30, lr: 4e-4 },
  'glue/cola': { epochs: 80, lr: 4e-4 },
  'glue/qnli': { epochs: 25, lr: 4e-4 },
  'glue/qqp': { epochs: 25, lr: 5e-4 },
  'glue/rte': { epochs: 80, lr: 5e-4 },
  'glue/stsb': { epochs: 40, lr: 4e-4 },
};

const VTAB_ALL = [
  'cifar',
  'caltech101',
  'dtd',
  'oxford_flowers102',
  'oxford_iiit_pet',
  'svhn',
  'sun397',
  'patch_camelyon',
  'eurosat',
  'resisc45',
  'diabetic_retinopathy',
  'clevr_count',
  'clevr_dist',
  'dmlab',
  'kitti',
  'dsprites_loc',
  'dsprites_ori',
  'smallnorb_azi',
  'smallnorb_ele',
].map((t) => `vtab/${t}`);

export const PRESETS: Record<string, Preset> = {
  'lora-glue-roberta-base': {
    description: 'RoBERTa-base on the eight GLUE tasks of the LoRA paper, with its per-task epochs and learning rates',
    source:
      'Hu et al., LoRA, ICLR 2022 (arXiv:2106.09685), Appendix D, Table 9 (RoBERTa-base); microsoft/LoRA examples/NLU',
    recipe: {
      model: { name: 'FacebookAI/roberta-base', task: 'seq-cls' },
      datasets: Object.keys(LORA_GLUE_TASKS),
      dataset_settings: Object.fromEntries(
        Object.entries(LORA_GLUE_TASKS).map(([name, t]) => [
          name,
          { max_length: 512, training: { epochs: t.epochs, lr: t.lr } },
        ]),
      ),
      method_settings: {
        lora: { options: { alpha: 8 }, targets: ['query', 'value'], ranks: [8] },
      },
      seeds: [0, 1, 2, 3, 4],
      training: {
        optimizer: 'adamw',
        schedule: 'linear',
        warmup_ratio: 0.06,
        batch_size: 16,
        weight_decay: 0.1,
        train_head: true,
        precision: 'bf16',
      },
      device: 'cuda',
    },
  },
  'vtab1k-vit-b16': {
    description:
      'ViT-B/16 (ImageNet-21k) on the 19 VTAB-1k tasks with the common PEFT protocol (100 epochs, cosine, batch 64)',
    source:
      'Zhai et al., VTAB (arXiv:1910.04867); protocol of NOAH/SNELL (Shen et al., NeurIPS 2024, ssfgunner/SNELL) and NOLA (UCDvision/NOLA)',
    recipe: {
      model: { name: 'google/vit-base-patch16-224-in21k', task: 'img-cls' },
      datasets: VTAB_ALL,
      // targets: the runtime's default for the model (the attention q/v projections)
      ranks: [8],
      seeds: [0],
      training: {
        optimizer: 'adamw',
        lr: 1e-3,
        weight_decay: 1e-4,
        schedule: 'cosine',
        warmup_ratio: 0.1,
        epochs: 100,
        batch_size: 64,
        train_head: true,
        precision: 'bf16',
      },
      device: 'cuda',
    },
  },
  'gsm8k-llama': {
    description:
      'A LLaMA-style decoder fine-tuned on GSM8k train, evaluated by exact match on GSM8k test (q/v adapters, r=32, α=64)',
    source:
      'Hugging Face PEFT method_comparison/MetaMathQA (Llama-3.2-3B, LoRA r=32 α=64 on q_proj/v_proj, lr 1e-4); batch and epochs (ours)',
    recipe: {
      model: { name: 'meta-llama/Llama-3.2-3B', task: 'causal-lm' },
      datasets: [{ name: 'gsm8k', max_length: 512 }],
      method_settings: {
        lora: { options: { alpha: 64 }, targets: ['q_proj', 'v_proj'] },
      },
      ranks: [32],
      seeds: [0],
      training: {
        optimizer: 'adamw',
        lr: 1e-4,
        weight_decay: 0,
        schedule: 'cosine',
        warmup_ratio: 0.03,
        epochs: 3,
        batch_size: 4,
        grad_accum: 4,
        train_head: false,
        precision: 'bf16',
        max_grad_norm: 1.0,
      },
      device: 'cuda',
    },
  },
  'cpu-tiny': {
    description: 'CPU-sized defaults for the built-in tiny models: short runs, frequent logging, fp32',
    source: 'rankflow (ours)',
    recipe: {
      training: {
        optimizer: 'adamw',
        lr: 5e-3,
        schedule: 'linear',
        warmup_ratio: 0.1,
        max_steps: 40,
        batch_size: 16,
        precision: 'fp32',
        eval_every: 20,
        checkpoint_every: 20,
        log_every: 5,
      },
      device: 'cpu',
    },
  },
};
