"""Image denoising on real photographs: recover a clean 32x32 patch from a noisy one.

The embedded default reads the natural photographs that ship inside the scikit-image wheel
(`skimage.data`: camera, astronaut, coffee, chelsea, rocket, ... and the 200 small crops of the
`lfw_subset` face set), so it runs offline on any install; `path` reads every image file of a
folder instead. Whole images are held out: the patches of the test images never appear in
training, and the faces are split by index the same way. Photographs are cut into `size` x `size`
patches (training: a grid with `stride`; held-out splits: a non-overlapping grid), in grey
(`channels=1`) or RGB (`channels=3`: grey photographs repeated over three channels).

Pixels are floats in [0, 1]. The noisy observation is x = clean + sigma * N(0, 1), not clipped,
and the noise level sigma is the difficulty: training draws at `difficulty` (0.1), the `test` split
uses it too, and `harder_levels` (0.2, 0.3) give out-of-distribution splits ("harder" at the
first, "harder_<level>" for the rest) on the *same* clean test patches, so the splits differ by
noise alone. A candidate answer y is an image of the same shape as the clean patch.

`start` chooses where descent starts (`init_answer`): the noisy observation clipped to [0, 1]
("noisy"), uniform noise in [0, 1] ("uniform") or flat grey ("grey"). Metrics: MSE on the [0, 1]
scale, and PSNR on the 0-255 scale as the EBT paper reports it (answers clipped to [0, 1] first, as
a saved image would be).
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from irem.problem import Problem, per_instance_mean
from irem.seeds import split_generator
from irem.task import Task, per_instance_level

# Photographs bundled in the scikit-image wheel (checked offline with scikit-image 0.26; `cat` is
# `chelsea` again and `stereo_motorcycle` a pair of near-identical views, of which the left is used).
# Synthetic pictures (colorwheel, logo, checkerboard, phantoms, binary masks) are left out, and so
# are the data sets that scikit-image downloads on first use (they need the network).
SKIMAGE_PHOTOS = (
    "astronaut",
    "brick",
    "camera",
    "cell",
    "chelsea",
    "clock",
    "coffee",
    "coins",
    "grass",
    "gravel",
    "hubble_deep_field",
    "immunohistochemistry",
    "microaneurysms",
    "moon",
    "page",
    "retina",
    "rocket",
    "stereo_motorcycle",
    "text",
)
DEFAULT_TEST_IMAGES = ("camera", "chelsea")
DEFAULT_VAL_IMAGES = ("coins",)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp")
STARTS = ("noisy", "uniform", "grey")
FACES = "lfw_subset"


def _as_float_image(array: np.ndarray, channels: int) -> np.ndarray:
    """[H, W, channels] float32 in [0, 1] from an image array of any dtype and channel count."""
    from skimage.color import rgb2gray
    from skimage.util import img_as_float32

    image = img_as_float32(array)
    if image.ndim == 3 and image.shape[-1] == 4:  # RGBA: drop alpha
        image = image[..., :3]
    if image.ndim == 3 and channels == 1:
        image = rgb2gray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], channels, axis=-1)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def _fit_side(image: np.ndarray, max_side: int) -> np.ndarray:
    """Shrink (anti-aliased) so the longer side is at most `max_side`: a 1411-pixel retina would
    otherwise outweigh every other photograph in the training pool."""
    from skimage.transform import rescale

    longest = max(image.shape[:2])
    if longest <= max_side:
        return image
    return rescale(image, max_side / longest, channel_axis=-1, anti_aliasing=True).astype(np.float32)


# the first bytes of each format, to tell a file that is not an image at all (text saved as x.png)
# from an image that is truncated or damaged: imageio's own message for either names no file, or
# advises installing a video plugin
MAGIC = {
    ".png": (b"\x89PNG\r\n\x1a\n",),
    ".jpg": (b"\xff\xd8\xff",),
    ".jpeg": (b"\xff\xd8\xff",),
    ".gif": (b"GIF87a", b"GIF89a"),
    ".bmp": (b"BM",),
    ".tif": (b"II*\x00", b"MM\x00*"),
    ".tiff": (b"II*\x00", b"MM\x00*"),
}


def read_image(file: Path) -> np.ndarray:
    """One image file as an array, or a ValueError naming the file and what is wrong with it."""
    from skimage.io import imread

    suffix = file.suffix.lower()
    with file.open("rb") as f:
        head = f.read(16)
    kind = suffix.lstrip(".").upper()
    starts = MAGIC.get(suffix)
    if suffix == ".webp":
        looks_right = head[:4] == b"RIFF" and head[8:12] == b"WEBP"
    else:
        looks_right = starts is None or any(head.startswith(m) for m in starts)
    if not looks_right:
        what = "it is empty" if not head else f"it starts with {head[:8]!r}, not a {kind} signature"
        raise ValueError(
            f"ImageDenoising: {file} is not a {kind} image ({what}; a text file saved as {file.name}?). "
            f"Remove it from {file.parent} or replace it with a real image."
        )
    try:
        array = imread(file)
    except Exception as err:  # PIL and imageio raise OSError, SyntaxError, ValueError... for damaged files
        raise ValueError(
            f"ImageDenoising: {file} has a {kind} header but cannot be decoded ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else 'no detail'}); it is probably truncated or damaged. "
            f"Re-export it or remove it from {file.parent}."
        ) from err
    if array.ndim not in (2, 3) or min(array.shape[:2]) < 1:
        raise ValueError(
            f"ImageDenoising: {file} decodes to an array of shape {tuple(array.shape)}, not a 2-D image "
            f"([H, W] or [H, W, channels]). Remove it from {file.parent}."
        )
    return array


@functools.lru_cache(maxsize=8)
def load_photos(path: str | None, channels: int, max_side: int) -> tuple[tuple[str, np.ndarray], ...]:
    """(name, [H, W, C] float image) for every photograph; cached, as tests build the task often."""
    if path is None:
        import skimage.data

        images = []
        for name in SKIMAGE_PHOTOS:
            array = getattr(skimage.data, name)()
            if isinstance(array, tuple):  # stereo_motorcycle: (left, right, disparity)
                array = array[0]
            images.append((name, array))
    else:
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"ImageDenoising: no folder of images at '{path}'.")
        files = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"ImageDenoising: the folder '{path}' holds no image files ({', '.join(IMAGE_SUFFIXES)}).")
        images = [(f.stem, read_image(f)) for f in files]
    return tuple((name, _fit_side(_as_float_image(array, channels), max_side)) for name, array in images)


@functools.lru_cache(maxsize=4)
def load_faces(size: int, channels: int) -> np.ndarray:
    """The 200 25x25 crops of `lfw_subset` (100 faces, 100 backgrounds) resized to [200, C, size, size]."""
    import skimage.data
    from skimage.transform import resize

    faces = skimage.data.lfw_subset().astype(np.float32)  # [200, 25, 25] in [0, 1]
    faces = resize(faces, (faces.shape[0], size, size), anti_aliasing=True).astype(np.float32)
    return np.repeat(np.clip(faces, 0, 1)[:, None], channels, axis=1)


def grid_patches(image: np.ndarray, size: int, stride: int) -> Tensor:
    """All `size` x `size` patches of an [H, W, C] image on a grid of `stride`, as [P, C, size, size]."""
    t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)  # [C, H, W]
    if t.shape[1] < size or t.shape[2] < size:
        return t.new_zeros(0, t.shape[0], size, size)
    p = t.unfold(1, size, stride).unfold(2, size, stride)  # [C, nh, nw, size, size]
    return p.permute(1, 2, 0, 3, 4).reshape(-1, t.shape[0], size, size)


def to_uint8(patches: Tensor) -> Tensor:
    """Pools are stored as bytes: a quarter of float32's memory, and what a photograph holds anyway."""
    return (patches * 255).round().clamp(0, 255).to(torch.uint8)


@functools.lru_cache(maxsize=4)
def build_pools(
    path: str | None,
    channels: int,
    size: int,
    stride: int,
    max_side: int,
    faces: bool,
    test_images: tuple[str, ...],
    val_images: tuple[str, ...],
) -> dict[str, Tensor]:
    """uint8 patch pools per split: training on a grid of `stride`, held-out splits non-overlapping.

    Cached (read-only tensors shared by equal tasks): cutting ~11k patches takes about a second.
    Faces: index 8 mod 10 goes to val, 9 mod 10 to test, the rest to training (faces and
    backgrounds alike).
    """
    photos = load_photos(path, channels, max_side)

    def cut(which: tuple[str, ...] | None, step: int) -> list[Tensor]:
        held = set(test_images) | set(val_images)
        return [
            grid_patches(image, size, step)
            for name, image in photos
            if (name in which if which is not None else name not in held)
        ]

    face_parts: dict[str, list[Tensor]] = {"train": [], "val": [], "test": []}
    if faces:
        crops = torch.from_numpy(load_faces(size, channels))
        rest = torch.arange(crops.shape[0]) % 10
        face_parts = {"train": [crops[rest < 8]], "val": [crops[rest == 8]], "test": [crops[rest == 9]]}
    return {
        "train": to_uint8(torch.cat(cut(None, stride) + face_parts["train"])),
        "val": to_uint8(torch.cat(cut(val_images, size) + face_parts["val"])),
        "test": to_uint8(torch.cat(cut(test_images, size) + face_parts["test"])),
    }


def psnr(y: Tensor, target: Tensor) -> Tensor:
    """Per-instance PSNR in dB on the 0-255 scale, y clipped to [0, 1] first (as a saved image would be).

    10 log10(255^2 / MSE_255) = -10 log10(MSE_[0,1]); a perfect answer is capped at 100 dB.
    """
    mse = ((y.clamp(0, 1) - target) ** 2).flatten(1).mean(1).double()
    return (-10 * torch.log10(mse.clamp_min(1e-10))).float()


class ImageDenoising(Task):
    """Denoise `size` x `size` patches of real photographs; the noise level is the difficulty."""

    name = "images"
    level_label = "noise level sigma"
    difficulty_label = "noise level sigma"
    higher_is_better = frozenset({"psnr"})

    def __init__(
        self,
        path: str | None = None,
        channels: int = 3,
        size: int = 32,
        stride: int = 16,
        max_side: int = 512,
        faces: bool = True,
        test_images: list[str] | None = None,
        val_images: list[str] | None = None,
        difficulty: float = 0.1,
        harder_levels: list[float] | tuple[float, ...] = (0.2, 0.3),
        start: str = "noisy",
        test_size: int = 256,
        val_size: int = 128,
        split_seed: int = 1234,
    ) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 2:
            raise ValueError(f"ImageDenoising: size must be an integer >= 2, got {size!r}.")
        if channels not in (1, 3):
            raise ValueError(f"ImageDenoising: channels must be 1 (grey) or 3 (RGB), got {channels!r}.")
        if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
            raise ValueError(f"ImageDenoising: stride must be an integer >= 1, got {stride!r}.")
        if max_side < size:
            raise ValueError(f"ImageDenoising: max_side must be >= size ({size}), got {max_side}.")
        if start not in STARTS:
            raise ValueError(f"ImageDenoising: unknown start '{start}'. Valid choices: {', '.join(STARTS)}.")
        levels = [float(v) for v in harder_levels]
        if not levels or any(not (math.isfinite(v) and v > 0) for v in [float(difficulty), *levels]):
            raise ValueError(
                f"ImageDenoising: the noise levels must be finite numbers > 0 and harder_levels non-empty, got difficulty="
                f"{difficulty}, harder_levels={list(harder_levels)}."
            )
        super().__init__(difficulty, levels[0], test_size=test_size, val_size=val_size, split_seed=split_seed)
        self.path, self.channels, self.size, self.stride = path, int(channels), int(size), int(stride)
        self.max_side, self.faces, self.start = int(max_side), bool(faces), start
        self.harder_levels = levels

        photos = load_photos(path, self.channels, self.max_side)
        names = [name for name, _ in photos]
        if test_images is None and val_images is None and path is not None:
            # a folder with no names given: the last sixth of its files for test, the one before for val
            k = max(1, len(names) // 6)
            test_images, val_images = names[-k:], names[-k - 1 : -k]
        test_set = list(DEFAULT_TEST_IMAGES if test_images is None else test_images)
        val_set = list(DEFAULT_VAL_IMAGES if val_images is None else val_images)
        unknown = [n for n in test_set + val_set if n not in names]
        if unknown:
            raise ValueError(
                f"ImageDenoising: held-out images {unknown} are not among the images. Valid names: {', '.join(names)}."
            )
        if set(test_set) & set(val_set):
            raise ValueError(
                f"ImageDenoising: an image cannot be in both test_images and val_images: {test_set}, {val_set}."
            )
        self.test_images, self.val_images = test_set, val_set
        self.train_images = [n for n in names if n not in test_set and n not in val_set]
        if not self.train_images:
            raise ValueError("ImageDenoising: every image is held out; leave some for training.")

        self.pools = build_pools(
            path, self.channels, self.size, self.stride, self.max_side, self.faces, tuple(test_set), tuple(val_set)
        )
        for split, key in (("val", "val_size"), ("test", "test_size")):
            have, want = self.pools[split].shape[0], getattr(self, key)
            if have < want:
                raise ValueError(
                    f"ImageDenoising: the {split} images hold {have} patches of {self.size}x{self.size}, fewer than "
                    f"{key}={want}; lower {key} or hold out more images."
                )

    # -- Task ---------------------------------------------------------------------------------
    def dims(self) -> dict[str, int]:
        flat = self.channels * self.size**2
        return {"x_dim": flat, "y_dim": flat, "channels": self.channels, "image_size": self.size}

    def answer_shape(self, problem: Problem) -> tuple[int, ...]:
        return (problem.num_instances, self.channels, self.size, self.size)

    def split_levels(self) -> dict[str, float | None]:
        levels: dict[str, float | None] = {"train": self.difficulty, "val": self.difficulty, "test": self.difficulty}
        levels["harder"] = self.harder_levels[0]
        for level in self.harder_levels[1:]:
            levels[f"harder_{level:g}"] = level
        return levels

    def generate(self, n: int, difficulty: float | Tensor, generator: torch.Generator) -> Problem:
        """`n` random training patches (random dihedral flips) with noise of level `difficulty`."""
        sigma = per_instance_level(difficulty, n)
        if bool((sigma < 0).any()):
            raise ValueError("ImageDenoising: the noise level must be >= 0.")
        pool = self.pools["train"]
        clean = pool[torch.randint(0, pool.shape[0], (int(n),), generator=generator)].float() / 255
        clean = self._flip(clean, generator)
        return self._noisy(clean, sigma, generator)

    def _noisy(self, clean: Tensor, sigma: Tensor, generator: torch.Generator) -> Problem:
        noise = torch.randn(clean.shape, generator=generator)
        x = clean + sigma.view(-1, 1, 1, 1) * noise
        return Problem(x=x, target=clean, difficulty=sigma)

    @staticmethod
    def _flip(patches: Tensor, generator: torch.Generator) -> Tensor:
        """One of the eight flips / transpositions of the square per patch, for the whole batch at once."""
        n = patches.shape[0]
        bits = torch.randint(0, 2, (3, n, 1, 1, 1), generator=generator).bool()
        patches = torch.where(bits[0], patches.flip(-1), patches)
        patches = torch.where(bits[1], patches.flip(-2), patches)
        return torch.where(bits[2], patches.transpose(-1, -2), patches)

    def split(self, name: str) -> Problem:
        """Fixed held-out patches: `val` from the val images; `test` and every harder split share the
        same clean test patches and differ in their (seeded) noise."""
        levels = self.split_levels()
        if name not in levels:
            raise ValueError(f"Unknown split '{name}' for task '{self.name}'. Valid splits: {', '.join(levels)}.")
        if name not in self._split_cache:
            g = split_generator(self.split_seed, name)
            if name == "train":  # a fixed sample of training patches, for reporting only
                self._split_cache[name] = self.generate(self.test_size, self.difficulty, g)
                return self._split_cache[name]
            source = "val" if name == "val" else "test"
            size = self.val_size if name == "val" else self.test_size
            pick = split_generator(self.split_seed, source)
            pool = self.pools[source]
            clean = pool[torch.randperm(pool.shape[0], generator=pick)[:size]].float() / 255
            self._split_cache[name] = self._noisy(clean, per_instance_level(levels[name], size), g)
        return self._split_cache[name]

    def init_answer(self, problem: Problem, generator: torch.Generator) -> Tensor:
        """The start of descent (`start`): the observation clipped to the pixel range, noise, or grey."""
        shape = self.answer_shape(problem)
        if self.start == "noisy":
            return problem.x.detach().clamp(0, 1).reshape(shape).clone()
        if self.start == "uniform":
            return torch.rand(shape, generator=generator).to(problem.device)
        return torch.full(shape, 0.5, device=problem.device)

    def check(self, problem: Problem, y: Tensor, tol: float = 1e-4) -> Tensor:
        """Is y a clean image the observation x could have come from? Judged from x and the noise level.

        Denoising has no unique answer to verify, so this is the discrepancy principle: the residual
        x - y must look like the noise that was added, mean ~0 and standard deviation ~sigma, within
        five standard errors for the patch's pixel count, and y must be a valid image in [0, 1]. The
        ground truth passes (its residual is the noise itself); a shifted or noisier y fails.
        """
        sigma = problem.difficulty.to(y.device)
        residual = (problem.x - y).flatten(1)
        d = residual.shape[1]
        mean_ok = residual.mean(1).abs() <= 5 * sigma / math.sqrt(d) + tol
        std_ok = (residual.std(1) - sigma).abs() <= 5 * sigma / math.sqrt(2 * d) + tol
        in_range = ((y >= -tol) & (y <= 1 + tol)).flatten(1).all(1)
        return mean_ok & std_ok & in_range

    def loss(self, problem: Problem, y: Tensor) -> Tensor:
        """Per-patch mean squared error on the [0, 1] scale."""
        return per_instance_mean((y - problem.target) ** 2, None, problem.num_instances)

    def metrics(self, problem: Problem, y: Tensor) -> dict[str, Tensor]:
        y = y.detach()
        return {"mse": self.loss(problem, y), "psnr": psnr(y, problem.target)}
