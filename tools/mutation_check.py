"""Plant named defects one at a time in a temporary copy of the repository and check that the tests catch each one.

    python tools/mutation_check.py                 # every mutant, then a killed/survived table and the kill rate
    python tools/mutation_check.py --list          # the mutants and the tests each one runs
    python tools/mutation_check.py --only NAME ... # some of them (exact names)

A mutant is data: (name, file, old snippet, new snippet, tests). The old snippet must occur exactly once in the file.
Each mutant runs ``pytest -x -q`` on its tests in the copy (PYTHONPATH pointing there) with a time limit; it is
killed when the tests fail, survived when they pass. The unmutated copy is tested first: a failing baseline would
make every mutant look killed. See docs/testing.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str  # relative to the repository root
    old: str
    new: str
    tests: tuple[str, ...]  # pytest arguments: files or node ids


LOSSES = ("tests/test_losses.py",)
METRICS = ("tests/test_eval.py::test_psnr_by_hand", "tests/test_eval.py::test_ssim_matches_scikit_image",
           "tests/test_eval.py::test_fid_matches_scipy_sqrtm",
           "tests/test_eval.py::test_kid_matches_the_unbiased_estimate_by_hand",
           "tests/test_eval.py::test_inception_score_by_hand",
           "tests/test_eval.py::test_lpips_matches_the_formula_with_a_local_backbone")
PIXELS = ("tests/test_tiling.py", "tests/test_convert_pixels.py")
REPORT = ("tests/test_report.py::test_chart_points_land_where_their_values_say",
          "tests/test_report.py::test_charts_of_several_series_share_one_scale_and_long_logs_keep_their_ends",
          "tests/test_report.py::test_report_charts_plot_the_logged_values",
          "tests/test_report.py::test_read_jsonl_skips_broken_lines_and_charts_handle_flat_and_single_points")
DOWNLOAD = ("tests/test_download.py",)

ENGINE = "tests/test_engine_numerics.py"
ENGINE_EMA = (f"{ENGINE}::test_ema_after_k_updates_equals_the_closed_form_and_copies_buffers",
              f"{ENGINE}::test_ema_warmup_ramps_the_decay_by_the_step_it_is_given",
              f"{ENGINE}::test_training_exports_the_ema_of_the_weights_after_each_step")
ENGINE_EMA_RESUME = ("tests/test_engine.py::test_resume_is_exact",)
ENGINE_POOL = tuple(f"{ENGINE}::test_{name}" for name in (
    "image_pool_returns_its_first_images_as_they_are", "image_pool_of_size_zero_returns_the_input_and_stores_nothing",
    "full_image_pool_swaps_in_a_stored_image_half_of_the_time", "image_pool_swaps_images_one_by_one_within_a_batch"))
ENGINE_FREEZE = (f"{ENGINE}::test_discriminators_get_no_gradient_from_the_generator_phase",)
ENGINE_SKIP = (f"{ENGINE}::test_a_non_finite_loss_leaves_its_group_and_optimizer_state_untouched",
               f"{ENGINE}::test_fused_adam_on_the_cpu_honours_found_inf")
ENGINE_LR = (f"{ENGINE}::test_lr_schedule_follows_the_formula_epoch_by_epoch",
             f"{ENGINE}::test_lr_warmup_scales_each_step_on_top_of_the_epoch_schedule")
ENGINE_BF16 = (f"{ENGINE}::test_bf16_mixed_precision_runs_bf16_kernels_on_the_cpu",)
JOBS = ("tests/test_jobs.py",)
ENGINE_BEST = (f"{ENGINE}::test_best_model_follows_the_lowest_l1",)
PHASES = ("tests/test_recipes.py::test_n_critic_and_lazy_r1_run_as_often_as_asked",
          "tests/test_recipes.py::test_lazy_r1_is_scaled_by_its_interval_and_eager_r1_is_not",
          "tests/test_recipes.py::test_ttur_gives_each_group_its_own_learning_rate",
          "tests/test_recipes.py::test_r1_penalty_of_a_linear_discriminator_is_its_squared_weight_norm")
CUT = ("tests/test_recipes.py::test_patch_nce_matches_a_hand_worked_case",
       "tests/test_recipes.py::test_cut_feature_mlp_has_the_reference_sizes_at_ngf_64")
SMOOTH_L1 = ("tests/test_recipes.py::test_smooth_l1_does_not_hold_a_residual_cyclegan_at_its_input",)
WIRING = "tests/test_wiring.py"
WIRING_PIX2PIX = (f"{WIRING}::test_pix2pix_d_judges_input_output_pairs",)
WIRING_CYCLEGAN = (f"{WIRING}::test_cyclegan_each_d_judges_its_own_domain",)
WIRING_POOL = tuple(f"{WIRING}::test_pooled_fakes_come_from_the_discriminators_own_generator[{recipe}]"
                    for recipe in ("cyclegan", "pix2pix"))
WIRING_CUT = (f"{WIRING}::test_cut_queries_and_keys_are_taken_at_the_same_places[cut]",)
WIRING_FASTCUT = (f"{WIRING}::test_cut_queries_and_keys_are_taken_at_the_same_places[fastcut]",)
WIRING_DCGAN = (f"{WIRING}::test_dcgan_d_judges_real_images_against_g_of_noise",)
WIRING_SR = (f"{WIRING}::test_sr_d_judges_the_high_res_crop_against_g_of_its_downscale",)
PIX2PIX = "translate/methods/pix2pix.py"
CUT_RECIPE = "translate/methods/cut.py"
DCGAN = "translate/methods/dcgan.py"
SR = "translate/methods/sr.py"
TRAINER = "translate/engine/trainer.py"
EVALUATION = "translate/engine/evaluation.py"
EMA = "translate/engine/ema.py"
POOL = "translate/methods/image_pool.py"
CYCLEGAN = "translate/methods/cyclegan.py"
RECIPE = "translate/methods/__init__.py"
LOSS = "translate/losses.py"
METRIC = "translate/evaluation/metrics.py"
TILING = "translate/inference/tiling.py"
IMAGEIO = "translate/imageio.py"
DL = "translate/data/download.py"
LOADER = "translate/data/loader.py"
PREEMPTION = ("tests/test_reliability.py::test_loader_workers_leave_stop_signals_to_the_main_process",)
OPTIONS = "tests/test_options.py"
OPTIONS_N_LAYERS = (f"{OPTIONS}::test_n_layers_discriminator_has_the_depth_asked_for",)
OPTIONS_INIT = (f"{OPTIONS}::test_init_scale_follows_each_init_types_formula",)
OPTIONS_JPEG = (f"{OPTIONS}::test_convert_quality_sets_the_jpeg_quantisation",)
OPTIONS_DIFFAUGMENT = (f"{OPTIONS}::test_diffaugment_draws_anew_every_step_and_the_seed_repeats_the_draws",)
OPTIONS_GRID = (f"{OPTIONS}::test_dcgan_sample_grid_is_what_the_exported_model_samples",)
OPTIONS_AREA = (f"{OPTIONS}::test_training_images_are_shrunk_by_area_averaging",)
OPTIONS_ALPHA = (f"{OPTIONS}::test_x4_conversion_upscales_alpha_smoothly",)
OPTIONS_SHARDS = (f"{OPTIONS}::test_shard_summaries_of_another_job_are_not_merged",)
OPTIONS_GROUPS = (f"{OPTIONS}::test_optimizer_settings_are_per_group_not_per_network",)
OPTIONS_RUN = (f"{OPTIONS}::test_run_files_follow_the_step_settings",)
OPTIONS_TABLE = f"{OPTIONS}::test_the_option_changes_its_observable"
CONVERT = "translate/inference/convert.py"

MUTANTS = [
    # losses.py
    Mutant("loss-vanilla-targets-swapped", LOSS, "F.binary_cross_entropy_with_logits(prediction, target)",
           "F.binary_cross_entropy_with_logits(prediction, 1 - target)", LOSSES),
    Mutant("loss-lsgan-is-l1", LOSS, "F.mse_loss(prediction, target)", "F.l1_loss(prediction, target)", LOSSES),
    Mutant("loss-wgan-signs-swapped", LOSS, "return -prediction.mean() if real else prediction.mean()",
           "return prediction.mean() if real else -prediction.mean()", LOSSES),
    Mutant("loss-hinge-without-relu", LOSS, "F.relu(1 - prediction).mean() if real",
           "(1 - prediction).mean() if real", LOSSES),
    Mutant("loss-hinge-generator-sign", LOSS, "return -prediction.mean()\n", "return prediction.mean()\n", LOSSES),
    Mutant("loss-gp-no-create-graph", LOSS, "create_graph=True)", "create_graph=False)", LOSSES),
    Mutant("loss-gp-norm-over-batch", LOSS, "grad.flatten(1).norm(2, dim=1)", "grad.norm(2)", LOSSES),
    Mutant("loss-gp-squared-norm", LOSS, "grad.flatten(1).norm(2, dim=1)", "grad.flatten(1).pow(2).sum(1)", LOSSES),
    Mutant("loss-gp-one-alpha-per-batch", LOSS, "torch.rand(real.shape[0], 1, 1, 1,", "torch.rand(1, 1, 1, 1,",
           LOSSES),
    Mutant("loss-d-terms-not-halved", LOSS, "0.5 * adversarial_loss(discriminator(real)",
           "adversarial_loss(discriminator(real)", LOSSES),
    Mutant("loss-gp-weight-dropped", LOSS, "lambda_gp * gradient_penalty(", "gradient_penalty(", LOSSES),
    Mutant("loss-l1-is-mse", LOSS, "else F.l1_loss(output, target)", "else F.mse_loss(output, target)", LOSSES),
    Mutant("loss-smooth-l1-beta-ignored", LOSS, "F.smooth_l1_loss(output, target, beta=beta) if beta > 0 else ",
           "", LOSSES),
    Mutant("cyclegan-cycle-l1-not-smoothed", CYCLEGAN, "l1_loss(G_B(fake_B), real_A, beta)",
           "l1_loss(G_B(fake_B), real_A)", SMOOTH_L1),
    Mutant("cyclegan-identity-l1-not-smoothed", CYCLEGAN, "l1_loss(G_A(real_B), real_B, beta)",
           "l1_loss(G_A(real_B), real_B)", SMOOTH_L1),
    Mutant("cyclegan-identity-B-l1-not-smoothed", CYCLEGAN, "l1_loss(G_B(real_A), real_A, beta)",
           "l1_loss(G_B(real_A), real_A)", SMOOTH_L1),
    Mutant("loss-smooth-l1-default-beta", LOSS, "F.smooth_l1_loss(output, target, beta=beta)",
           "F.smooth_l1_loss(output, target)", LOSSES),
    # metrics.py
    Mutant("fid-one-trace-twice", METRIC, "cov_a.trace() + cov_b.trace()", "2 * cov_a.trace()", METRICS),
    Mutant("fid-mean-term-not-squared", METRIC, "(mu_a - mu_b).pow(2).sum()", "(mu_a - mu_b).abs().sum()", METRICS),
    Mutant("fid-no-square-root", METRIC, "2 * eigenvalues.sqrt().sum()", "2 * eigenvalues.sum()", METRICS),
    Mutant("fid-biased-covariance", METRIC, "torch.cov(a.T), torch.cov(b.T)",
           "torch.cov(a.T, correction=0), torch.cov(b.T, correction=0)", METRICS),
    Mutant("ssim-border-padded", METRIC, 'padding = "valid" if min(x.shape[-2:]) >= SSIM_WINDOW else "same"',
           'padding = "same"', METRICS),
    Mutant("ssim-window-7", METRIC, "SSIM_WINDOW = 11", "SSIM_WINDOW = 7", METRICS),
    Mutant("psnr-20-log", METRIC, "10 * torch.log10(1.0 / mse", "20 * torch.log10(1.0 / mse", METRICS),
    Mutant("psnr-batch-mse", METRIC, ".pow(2).flatten(1).mean(1)", ".pow(2).mean().expand(x.shape[0])", METRICS),
    Mutant("kid-diagonal-kept", METRIC, "xx = (k_xx.sum() - k_xx.diagonal().sum()) / (m * (m - 1))",
           "xx = k_xx.sum() / (m * m)", METRICS),
    Mutant("is-mean-of-exponentials", METRIC, "scores.append(kl.mean().exp())", "scores.append(kl.exp().mean())",
           METRICS),
    Mutant("lpips-inputs-not-rescaled", METRIC, "self.net(x, y, normalize=True)", "self.net(x, y)", METRICS),
    # tiling.py
    Mutant("tiling-linear-ramp-over-overlap", TILING,
           "t = (((d + 0.5) / width - 0.25) * 2).clamp(0, 1)\n    return t * t * (3 - 2 * t)",
           "t = ((d + 0.5) / width).clamp(0, 1)\n    return t", PIXELS),
    Mutant("tiling-smoothstep-over-whole-overlap", TILING, "t = (((d + 0.5) / width - 0.25) * 2).clamp(0, 1)",
           "t = ((d + 0.5) / width).clamp(0, 1)", PIXELS),
    Mutant("tiling-hard-seams", TILING, "out[0, :, y0:y0 + ch, x0:x0 + cw] += result[k, :, :ch, :cw] * weight",
           "out[0, :, y0:y0 + ch, x0:x0 + cw] = result[k, :, :ch, :cw] * weight", PIXELS),
    Mutant("tiling-one-axis-not-normalised", TILING, "    out /= sum_x\n", "", PIXELS),
    Mutant("tiling-each-tile-own-statistics", TILING, 'hook.remove()\n    set_norm_mode(norms, "fixed")',
           'hook.remove()\n    set_norm_mode(norms, "compute")', PIXELS),
    Mutant("tiling-positions-off-the-stride-grid", TILING, "(n - 1)) // stride * stride for i in range(n)]",
           "(n - 1)) for i in range(n)]", PIXELS),
    Mutant("tiling-symmetric-padding", TILING, "(2 * (length - 1) - i)", "(2 * length - 1 - i)", PIXELS),
    # the converter's output path
    Mutant("convert-writes-black", "translate/inference/convert.py",
           "write_image(job.dst, pixels.permute(1, 2, 0).numpy(),",
           "write_image(job.dst, pixels.permute(1, 2, 0).numpy() * 0,", PIXELS),
    Mutant("convert-tile-option-ignored", "translate/inference/convert.py",
           "translate_pixels(pixels, name, batch_size=batch_size, tile=tile,",
           "translate_pixels(pixels, name, batch_size=batch_size, tile=0,", PIXELS),
    Mutant("jpeg-drops-red-not-alpha", IMAGEIO, "pixels = pixels[..., :-1]", "pixels = pixels[..., 1:]", PIXELS),
    Mutant("png16-rows-not-differenced", IMAGEIO, "    filtered[1:, 1:] -= rows[:-1]\n", "", PIXELS),
    Mutant("exif-orientation-not-applied", IMAGEIO, "_orient(pixels, orientation) if orientation in range(2, 9)",
           "pixels if orientation in range(2, 9)", PIXELS),
    # report charts
    Mutant("chart-points-in-one-corner", "translate/evaluation/report.py", "(x - x0) / (x1 - x0) * w",
           "(x - x0) // (x1 - x0) * w", REPORT),
    Mutant("chart-y-axis-not-flipped", "translate/evaluation/report.py", "top + (1 - (y - y0) / (y1 - y0)) * h",
           "top + (y - y0) / (y1 - y0) * h", REPORT),
    Mutant("chart-thinning-drops-the-last-point", "translate/evaluation/report.py",
           " + ([values[-1]] if (len(values) - 1) % step else [])", "", REPORT),
    # archive safety and resumed downloads
    Mutant("tar-member-checks-removed", DL, "problem = _tar_problem(member, out)", "problem = None", DOWNLOAD),
    Mutant("tar-fifo-allowed", DL, "if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):",
           "if member.ischr() or member.isblk():", DOWNLOAD),
    Mutant("tar-on-disk-check-skipped", DL, "return _check_on_disk(out, member.name, link, base)", "return None",
           DOWNLOAD),
    Mutant("inside-by-string-prefix", DL, "real.startswith(root_real + os.sep)", "real.startswith(root_real)",
           DOWNLOAD),
    Mutant("final-link-sweep-skipped", DL, "    _check_links(archive, out)\n", "", DOWNLOAD),
    Mutant("zip-special-files-allowed", DL, "(0, stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK)",
           "(0, stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK, stat.S_IFIFO, stat.S_IFCHR)", DOWNLOAD),
    Mutant("tar-filter-error-unguarded", DL, "except filter_error as e:", "except tarfile.FilterError as e:",
           DOWNLOAD),
    Mutant("http-416-accepts-any-part", DL, 'get("Content-Range"))[1] == start:', 'get("Content-Range"))[1]:',
           DOWNLOAD),
    Mutant("http-206-offset-unchecked", DL, "if response.status == 206 and first != start:",
           "if response.status == 206 and first is None:", DOWNLOAD),
    # the engine (translate/engine, translate/methods): step, skip, freeze, EMA, pool, schedules, phases
    Mutant("ema-update-does-nothing", EMA, "torch._foreach_lerp_(ema_params, params, 1 - self.decay_at(t))",
           "pass", ENGINE_EMA),
    Mutant("ema-decay-direction", EMA, "torch._foreach_lerp_(ema_params, params, 1 - self.decay_at(t))",
           "torch._foreach_lerp_(ema_params, params, self.decay_at(t))", ENGINE_EMA),
    Mutant("ema-warmup-ignored", EMA, "if self.warmup else self.decay", "if False else self.decay", ENGINE_EMA),
    Mutant("ema-warmup-off-by-one", EMA, "min(self.decay, (1 + t) / (10 + t))", "min(self.decay, (2 + t) / (11 + t))",
           ENGINE_EMA),
    Mutant("ema-warmup-restarts-on-resume", EMA, "torch._foreach_lerp_(ema_params, params, 1 - self.decay_at(t))",
           "self.n = getattr(self, 'n', -1) + 1; torch._foreach_lerp_(ema_params, params, 1 - self.decay_at(self.n))",
           ENGINE_EMA_RESUME),  # its own update count, which no checkpoint holds
    Mutant("ema-warmup-setting-ignored", TRAINER, "EMA(self.nets[n], t.ema_decay, t.ema_warmup)",
           "EMA(self.nets[n], t.ema_decay)", ENGINE_EMA),
    Mutant("warmup-never-ends", TRAINER, "if self.state.step >= w:", "if self.state.step > w:", ENGINE_LR),
    Mutant("ema-buffers-not-copied", EMA, "b_ema.copy_(b)", "b_ema.copy_(b_ema)", ENGINE_EMA),
    Mutant("warmup-off-by-one", TRAINER, "lr * (self.state.step + 1) / w", "lr * self.state.step / w", ENGINE_LR),
    Mutant("warmup-never-applied", TRAINER, "                    self._warm_up()\n", "", ENGINE_LR),
    Mutant("warmup-compounds", TRAINER, 'param_group["lr"] = lr * (self.state.step + 1) / w',
           'param_group["lr"] *= (self.state.step + 1) / w', ENGINE_LR),
    Mutant("ema-never-updated", TRAINER, "ema.update(self.nets[name], state.step - 1)", "pass", ENGINE_EMA),
    Mutant("pool-returns-its-input", POOL, "        if self.size == 0:", "        if True:", ENGINE_POOL),
    Mutant("pool-grows-past-size", POOL, "len(self.images) < self.size", "len(self.images) <= self.size",
           ENGINE_POOL),
    Mutant("pool-swap-probability", POOL, "> 0.5:", "> 0.3:", ENGINE_POOL),
    Mutant("pool-stored-image-not-replaced", POOL, "self.images[i] = image", "pass", ENGINE_POOL),
    Mutant("d-trainable-in-g-phase", TRAINER, "            net.requires_grad_(False)",
           '            net.requires_grad_(group == "G")', ENGINE_FREEZE),
    Mutant("frozen-never-unfrozen", TRAINER, "            net.requires_grad_(True)", "            pass",
           ENGINE_SKIP),
    Mutant("skip-by-zeroing-grads", TRAINER, "                    inner.found_inf = skipped\n",
           "                    [p.grad.zero_() for p in params if p.grad is not None and skipped]\n"
           "                    inner.found_inf = torch.zeros_like(skipped)\n", ENGINE_SKIP),
    Mutant("no-check-in-d-phase", TRAINER, "skipped = _found_inf(params, acc.device)",
           'skipped = _found_inf(params, acc.device) * (group == "G")', ENGINE_SKIP),
    Mutant("found-inf-never-set", TRAINER, "inner.found_inf = skipped", "inner.found_inf = torch.zeros_like(skipped)",
           ENGINE_SKIP),
    Mutant("lr-constant-instead-of-linear", TRAINER,
           "return lambda epoch: 1.0 - max(0, epoch + 1 - t.n_epochs) / float(t.n_epochs_decay + 1)",
           "return lambda epoch: 1.0", ENGINE_LR),
    Mutant("lr-linear-off-by-one", TRAINER, "max(0, epoch + 1 - t.n_epochs)", "max(0, epoch - t.n_epochs)",
           ENGINE_LR),
    Mutant("lr-step-never-runs", TRAINER, 'if t.lr_policy == "step":', 'if t.lr_policy == "steps":', ENGINE_LR),
    Mutant("lr-cosine-over-n-epochs", TRAINER, "math.pi * min(epoch, total) / total",
           "math.pi * min(epoch, t.n_epochs) / t.n_epochs", ENGINE_LR),
    Mutant("lr-schedulers-never-stepped", TRAINER, "                        scheduler.step()",
           "                        pass", ENGINE_LR),
    Mutant("bf16-ignored", TRAINER, "mixed_precision=precision,", 'mixed_precision="no",', ENGINE_BF16),
    Mutant("best-model-always-latest", EVALUATION, "if value is not None and self.is_better(value):",
           "if value is not None:", ENGINE_BEST),
    Mutant("lower-is-better-flipped", EVALUATION, "return value < state.best if lower_is_better",
           "return value > state.best if lower_is_better", ENGINE_BEST),
    Mutant("phase-every-ignored", TRAINER, "            if self.state.step % phase.every:",
           "            if False:", PHASES),
    Mutant("phase-repeat-ignored", TRAINER, "for _ in range(phase.repeat):", "for _ in range(1):", PHASES),
    Mutant("group-lr-ignored", TRAINER, "lr = o.lr if o and o.lr is not None else t.lr", "lr = t.lr", PHASES),
    Mutant("lazy-r1-not-scaled", RECIPE, "m.r1_gamma / 2 * m.r1_every", "m.r1_gamma / 2", PHASES),
    Mutant("r1-not-squared", LOSS, "grad.pow(2).flatten(1).sum(1).mean()", "grad.abs().flatten(1).sum(1).mean()",
           PHASES),
    Mutant("process-state-not-restored", TRAINER, "            self.recipe.load_state_dict(process_state)",
           "            pass", ("tests/test_engine.py::test_resume_is_exact",)),
    # the loop's side jobs (translate/engine/*.py), each against its own tests
    Mutant("last-checkpoint-saved-twice", "translate/engine/checkpoint.py", " and step < self.max_steps:", ":", JOBS),
    Mutant("early-stop-ignores-min-delta", EVALUATION, "value > ref + delta", "value > ref", JOBS),
    Mutant("loss-window-never-reset", "translate/engine/progress.py", "        self.sums, self.count = {}, 0\n",
           "", JOBS),
    Mutant("early-stop-loses-its-last-losses", "translate/engine/progress.py",
           "        self.write()  # the last", "        pass  # the last", JOBS),
    Mutant("longest-skip-run-forgotten", "translate/engine/nonfinite.py", "torch.maximum(self.skips[1], run)", "run",
           JOBS),
    Mutant("memory-peak-not-kept", "translate/engine/memory.py",
           "trainer.state.peak_memory = max(trainer.state.peak_memory, peak(device))",
           "trainer.state.peak_memory = peak(device)", JOBS),
    # CUT
    Mutant("nce-keys-not-detached", LOSS, "    key = key.detach()\n", "", CUT),
    Mutant("nce-temperature-ignored", LOSS, "/ temperature", "/ 1.0", CUT),
    Mutant("nce-wrong-positive", LOSS, "target = torch.arange(query.shape[1], device=query.device)",
           "target = torch.zeros(query.shape[1], dtype=torch.long, device=query.device)", CUT),
    Mutant("cut-mlp-width-ignored", "translate/methods/cut.py", "nn.Linear(c, nc), nn.ReLU(), nn.Linear(nc, nc)",
           "nn.Linear(c, 256), nn.ReLU(), nn.Linear(256, nc)", CUT),
    # wiring: the right network fed the wrong tensor (tests/test_wiring.py)
    Mutant("pix2pix-d-pair-order-swapped", PIX2PIX, 'nets["D"](torch.cat([real_A, fake_B], 1))',
           'nets["D"](torch.cat([fake_B, real_A], 1))', WIRING_PIX2PIX),
    Mutant("pix2pix-real-pair-swapped", PIX2PIX, '{"D": torch.cat([batch["A"], batch["B"]], 1)}',
           '{"D": torch.cat([batch["B"], batch["A"]], 1)}', WIRING_PIX2PIX),
    Mutant("pix2pix-l1-to-the-input", PIX2PIX, "l1_loss(fake_B, real_B)", "l1_loss(fake_B, real_A)", WIRING_PIX2PIX),
    Mutant("pix2pix-pool-splits-pairs", PIX2PIX,
           'self.fake_pool.query(torch.cat([batch["A"], ctx["fake_B"].detach()], 1))',
           'torch.cat([batch["A"], self.fake_pool.query(ctx["fake_B"].detach())], 1)', WIRING_POOL),
    Mutant("cyclegan-d-b-judges-g-a-fakes", CYCLEGAN, 'self.judge(nets, "D_B", batch["A"], fake_A)',
           'self.judge(nets, "D_B", batch["A"], fake_B)', WIRING_CYCLEGAN),
    Mutant("cyclegan-d-b-real-from-domain-b", CYCLEGAN, 'self.judge(nets, "D_B", batch["A"], fake_A)',
           'self.judge(nets, "D_B", batch["B"], fake_A)', WIRING_CYCLEGAN),
    Mutant("cyclegan-g-b-asks-d-a", CYCLEGAN, 'self.adversarial(nets["D_B"](fake_A))',
           'self.adversarial(nets["D_A"](fake_A))', WIRING_CYCLEGAN),
    Mutant("cyclegan-cycle-through-one-generator", CYCLEGAN, "l1_loss(G_B(fake_B), real_A, beta)",
           "l1_loss(G_A(fake_B), real_A, beta)", WIRING_CYCLEGAN),
    Mutant("cyclegan-identity-via-wrong-generator", CYCLEGAN, "l1_loss(G_A(real_B), real_B, beta)",
           "l1_loss(G_B(real_B), real_B, beta)", WIRING_CYCLEGAN),
    Mutant("cyclegan-identity-weight-swapped", CYCLEGAN, "o.lambda_B * o.lambda_identity * l1_loss(G_A(real_B)",
           "o.lambda_A * o.lambda_identity * l1_loss(G_A(real_B)", WIRING_CYCLEGAN),
    Mutant("cyclegan-pools-shared", CYCLEGAN, "fake_A = self.fake_A_pool.query(", "fake_A = self.fake_B_pool.query(",
           WIRING_POOL),
    Mutant("cut-queries-sampled-anew", CUT_RECIPE, 'nets["F"](feat_q, o.num_patches, ids)',
           'nets["F"](feat_q, o.num_patches)', WIRING_CUT),
    Mutant("cut-patch-ids-ignored", CUT_RECIPE, "chosen = patch_ids[i]",
           "chosen = torch.randperm(flat.shape[1], device=feat.device)[:num_patches]", WIRING_CUT),
    Mutant("cut-keys-from-the-output", CUT_RECIPE, 'feat_k = encode(nets["G"], source, o.nce_layers)',
           'feat_k = encode(nets["G"], output, o.nce_layers)', WIRING_CUT),
    Mutant("cut-nce-idt-keys-from-real-a", CUT_RECIPE, "self.nce(nets, real_B, fake[len(real_A):], flipped)",
           "self.nce(nets, real_A, fake[len(real_A):], flipped)", WIRING_CUT),
    Mutant("cut-d-sees-the-identity-output", CUT_RECIPE, 'fake_B = ctx["fake_B"] = fake[: len(real_A)]',
           'fake_B = ctx["fake_B"] = fake[len(real_A):]', WIRING_CUT),
    Mutant("fastcut-queries-flipped-on-wrong-axis", CUT_RECIPE, "feat_q = [f.flip(3) for f in feat_q]",
           "feat_q = [f.flip(2) for f in feat_q]", WIRING_FASTCUT),
    Mutant("fastcut-keys-from-the-flipped-input", CUT_RECIPE, "nce = self.nce(nets, real_A, fake_B, flipped)",
           "nce = self.nce(nets, real[: len(real_A)], fake_B, flipped)", WIRING_FASTCUT),
    Mutant("dcgan-real-and-fake-swapped", DCGAN, 'self.judge(nets, "D", real, fake)',
           'self.judge(nets, "D", fake.detach(), real)', WIRING_DCGAN),
    Mutant("sr-d-judges-the-bicubic-upscale", SR, 'self.judge(nets, "D", ctx["hr"], ctx["fake"])',
           'self.judge(nets, "D", ctx["hr"], upscale_bicubic(ctx["lr"]))', WIRING_SR),
    Mutant("sr-l1-to-the-bicubic-upscale", SR, "l1_loss(fake, hr)", "l1_loss(fake, upscale_bicubic(lr))", WIRING_SR),
    # test-time preprocessing
    Mutant("test-crop-not-centred", "translate/data/transforms.py", 'params["crop"] = (dx // 2, dy // 2)',
           'params["crop"] = (0, 0)', ("tests/test_data_datasets.py::test_aligned_direction_channels_and_eval",)),
    # options: a setting silently ignored, an interpolation swapped, stale bookkeeping (tests/test_options.py)
    Mutant("n-layers-d-ignored", "translate/networks/discriminators.py",
           "return NLayerDiscriminator(input_nc, ndf, n_layers, norm)",
           "return NLayerDiscriminator(input_nc, ndf, 3, norm)", OPTIONS_N_LAYERS),
    Mutant("n-layers-d-not-passed", RECIPE, "ndf=m.ndf, n_layers=m.n_layers_D,", "ndf=m.ndf, n_layers=3,",
           OPTIONS_N_LAYERS),
    Mutant("xavier-ignores-init-gain", "translate/networks/__init__.py", "nn.init.xavier_normal_(m.weight, gain=gain)",
           "nn.init.xavier_normal_(m.weight)", OPTIONS_INIT),
    Mutant("jpeg-quality-ignored", CONVERT, "pool.submit(_write, job, output, image, quality)",
           "pool.submit(_write, job, output, image, 95)", OPTIONS_JPEG),
    Mutant("diffaugment-same-draws-every-step", TRAINER, "self.diffaugment.set_step(self.state.step)",
           "self.diffaugment.set_step(0)", OPTIONS_DIFFAUGMENT),
    Mutant("diffaugment-step-not-in-seed", "translate/diffaugment.py",
           "self.generator.manual_seed(step_seed(self.seed, step))",
           "self.generator.manual_seed(step_seed(self.seed, 0))", OPTIONS_DIFFAUGMENT),
    Mutant("dcgan-grid-in-train-mode", DCGAN, "fake = G.eval()(z)", "fake = G(z)", OPTIONS_GRID),
    Mutant("shrink-bilinear-not-area", "translate/data/transforms.py", "cv2.INTER_AREA if shrink else cv2.INTER_CUBIC",
           "cv2.INTER_LINEAR if shrink else cv2.INTER_CUBIC", OPTIONS_AREA),
    Mutant("sr-alpha-nearest", "translate/inference/translator.py",
           'mode="bilinear",\n                                              align_corners=False)[0]',
           'mode="nearest")[0]', OPTIONS_ALPHA),
    Mutant("shard-summary-of-other-files-merged", CONVERT, '    if part.get("images_sha256") != digest:\n',
           "    if False:\n", OPTIONS_SHARDS),
    Mutant("shard-summary-options-unchecked", CONVERT, "if theirs.get(key) != value]", "if False]", OPTIONS_SHARDS),
    Mutant("stale-merged-summary-kept", CONVERT, "            merged_path.unlink(missing_ok=True)\n",
           "            pass\n", OPTIONS_SHARDS),
    Mutant("optimizer-keys-checked-against-networks", "translate/config.py",
           "for group in config.train.optimizers if group not in recipe.groups]",
           "for group in config.train.optimizers if group not in recipe.networks]", OPTIONS_GROUPS),
    Mutant("group-lr-only-for-its-namesake-network", TRAINER,
           "optimizers[group] = torch.optim.Adam(params, lr=lr, betas=betas, **fused)",
           'optimizers[group] = torch.optim.Adam([{"params": list(self.nets[n].parameters()), "lr": lr if n == group '
           'else t.lr} for n in members], betas=betas, **fused)', OPTIONS_GROUPS),
    Mutant("channels-last-ignored", TRAINER,
           "memory_format = torch.channels_last if t.channels_last else torch.preserve_format",
           "memory_format = torch.preserve_format", (f"{OPTIONS_TABLE}[train.channels_last[pix2pix]]",)),
    Mutant("eval-max-images-ignored", EVALUATION, "max_images=t.eval_max_images", "max_images=None", OPTIONS_RUN),
    # preemption: a worker must not take a group signal on any thread, whichever the kernel picks
    Mutant("loader-workers-start-with-stop-signals-open", LOADER,
           "multiprocessing_context=worker_context() if d.num_workers > 0 else None,",
           "multiprocessing_context=None,", PREEMPTION),
    Mutant("loader-workers-sigterm-not-blocked-at-start", LOADER, "previous = signal.pthread_sigmask(signal.SIG_BLOCK, "
           "STOP_SIGNALS)", "previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})", PREEMPTION),
]


# Not copied: the virtual environment (gigabytes), git data, caches, runs and downloaded datasets.
IGNORED = (".venv", ".git", "__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis", "*.egg-info", "runs",
           ".cache", "build")


def make_copy(root: Path) -> Path:
    """The working tree in a temp folder (links kept as links)."""
    copy = Path(tempfile.mkdtemp(prefix="mutants-")) / "repo"
    try:
        shutil.copytree(root, copy, symlinks=True, ignore=shutil.ignore_patterns(*IGNORED))
    except BaseException:
        shutil.rmtree(copy.parent, ignore_errors=True)
        raise
    return copy


def check_snippets(mutants: list[Mutant], root: Path) -> list[str]:
    """One line per mutant whose old snippet does not occur exactly once in its file."""
    problems = []
    for m in mutants:
        path = root / m.path
        count = path.read_text().count(m.old) if path.is_file() else -1
        if count != 1:
            where = "the file does not exist" if count < 0 else f"the old snippet occurs {count} times, not once"
            problems.append(f"{m.name}: {m.path}: {where}")
    return problems


def run_tests(copy: Path, tests: tuple[str, ...], timeout: float) -> tuple[str, float]:
    """'passed', 'failed', 'timeout' or 'error' (pytest could not run them: exit status above 1) and seconds."""
    env = {**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"}
    start = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
                              cwd=copy, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.perf_counter() - start
    status = {0: "passed", 1: "failed"}.get(done.returncode, "error")
    if status == "error":
        print(done.stdout[-2000:] + done.stderr[-2000:], file=sys.stderr)
    return status, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="list the mutants and their tests, run nothing")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these mutants")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per test run (default %(default)s)")
    parser.add_argument("--repo", type=Path, default=ROOT, help="repository to copy (default: this checkout)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the run of the tests without mutants")
    args = parser.parse_args(argv)

    mutants = MUTANTS
    if args.only:
        unknown = sorted(set(args.only) - {m.name for m in MUTANTS})
        if unknown:
            parser.error(f"unknown mutant {', '.join(unknown)} (see --list)")
        mutants = [m for m in MUTANTS if m.name in args.only]
    if args.list:
        for m in mutants:
            files = dict.fromkeys(t.split("::")[0] for t in m.tests)
            print(f"{m.name:40} {m.path:36} {' '.join(files)}")
        return 0
    problems = check_snippets(mutants, args.repo)
    if problems:
        print("error: mutants that do not apply:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2

    copy = make_copy(args.repo)
    try:
        if not args.no_baseline:
            tests = tuple(dict.fromkeys(t for m in mutants for t in m.tests))
            status, seconds = run_tests(copy, tests, args.timeout * 2)
            print(f"baseline (no mutant): {status} in {seconds:.0f} s", flush=True)
            if status != "passed":
                print("error: the tests fail without any mutant; fix them first", file=sys.stderr)
                return 2
        results = []
        for m in mutants:
            path = copy / m.path
            original = path.read_text()
            path.write_text(original.replace(m.old, m.new))
            try:
                status, seconds = run_tests(copy, m.tests, args.timeout)
            finally:
                path.write_text(original)
            outcome = {"failed": "killed", "timeout": "killed (timeout)", "passed": "SURVIVED"}.get(status, "error")
            results.append((m, outcome))
            print(f"{m.name:40} {outcome:17} {seconds:5.0f} s", flush=True)
    finally:
        shutil.rmtree(copy.parent, ignore_errors=True)

    killed = sum(o.startswith("killed") for _, o in results)
    counted = sum(o != "error" for _, o in results)
    print(f"\nkilled {killed} of {counted} mutants ({100 * killed / max(counted, 1):.0f} %)"
          + (f"; {len(results) - counted} could not run (error)" if counted < len(results) else ""))
    for m, outcome in results:
        if outcome in ("SURVIVED", "error"):
            print(f"  {outcome.lower()}: {m.name} ({m.path})")
    return 0 if killed == counted == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
