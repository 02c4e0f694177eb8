"""Notebook templates: what a person picks, and the image each one runs.

Production image names come from settings (LATTICE_TEMPLATE_IMAGES, one
environment variable per template). Where LATTICE_LOCAL_IMAGES is on (the
embedded default, tests, CI: no registry is reachable) each template runs its
image built on the host from images/<template>/Dockerfile.local the first time
a notebook of it starts there (apps.runtimes.images); a template this
installation does not build (LATTICE_LOCAL_TEMPLATES) is marked so in the
picker and refused at start, never swapped for another image.

The "custom" template runs an image reference the person gives; it is
checked against Docker's reference grammar and, if
LATTICE_CUSTOM_IMAGE_REGISTRIES is set, limited to those registries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.conf import settings

from apps.runtimes.images import is_local_image, local_template_image, template_builds_here

CUSTOM = "custom"
# What the create form offers first (and the image `make dev` builds ahead of a first start).
DEFAULT_TEMPLATE = "scipy"
_MAX_REFERENCE = 255


@dataclass(frozen=True)
class Template:
    slug: str
    name: str
    description: str


TEMPLATES: dict[str, Template] = {
    t.slug: t
    for t in (
        Template("pytorch", "PyTorch", "PyTorch with CUDA, torchvision and the usual data stack."),
        Template("tensorflow", "TensorFlow", "TensorFlow with CUDA and Keras."),
        Template(
            "scipy",
            "Scientific Python",
            "NumPy, pandas, SciPy, scikit-learn and matplotlib.",
        ),
        Template("r", "R", "R with the IRkernel, tidyverse and data.table."),
        Template(CUSTOM, "Custom image", "Any image that starts a Jupyter Server on port 8888."),
    )
}

# Docker's reference grammar, simplified: [registry[:port]/]path[:tag][@sha256:digest].
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REGISTRY = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9-]+)*(?::[0-9]+)?/)"
_REFERENCE = re.compile(
    rf"^(?P<registry>{_REGISTRY})?(?P<path>{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$",
)


class TemplateError(ValueError):
    """A template or image the person must change; the message says how."""


class TemplateNotBuiltError(TemplateError):
    """A template this installation has no image for (not a mistake of the person's)."""


NOT_BUILT = "not built on this installation"


def template_choices() -> list[tuple[str, str]]:
    return [(t.slug, t.name) for t in TEMPLATES.values()]


def runs_here(template: str) -> bool:
    """False for a template whose image this installation has no way to get."""
    return template == CUSTOM or not settings.LATTICE_LOCAL_IMAGES or template_builds_here(template)


def built_on_hosts(template: str) -> bool:
    """True when this installation's hosts build ``template``'s image themselves (so a host
    may say it is building it)."""
    return bool(settings.LATTICE_LOCAL_IMAGES) and template_builds_here(template)


def template_labels() -> list[tuple[str, str]]:
    """The picker's choices: each template's name, "(not built on this installation)" after
    the ones that would be refused at start."""
    return [
        (t.slug, t.name if runs_here(t.slug) else f"{t.name} ({NOT_BUILT})")
        for t in TEMPLATES.values()
    ]


def validate_custom_image(reference: str) -> str:
    """The reference, stripped, if it is a valid image reference from an allowed registry."""
    reference = reference.strip()
    if not reference:
        raise TemplateError("Give the image to run, e.g. ghcr.io/you/notebook:1.0.")
    if len(reference) > _MAX_REFERENCE:
        raise TemplateError("An image reference is at most 255 characters.")
    match = _REFERENCE.match(reference)
    if match is None:
        raise TemplateError(
            f"{reference!r} is not an image reference: use lowercase names like "
            "registry.example.com/team/image:tag.",
        )
    if is_local_image(reference):
        # Lattice's hosts build these names themselves; on Docker Hub they are anyone's.
        raise TemplateError(
            f"{reference} is the name of an image Lattice builds itself: pick its template "
            "instead, or give an image from a registry.",
        )
    allowed = settings.LATTICE_CUSTOM_IMAGE_REGISTRIES
    if allowed:
        registry = (match.group("registry") or "docker.io/").rstrip("/")
        if registry not in allowed:
            raise TemplateError(
                f"Images from {registry} are not allowed here; use one of: {', '.join(allowed)}.",
            )
    return reference


def image_for(template: str, custom_image: str = "") -> str:
    """The image a notebook of ``template`` runs on this installation."""
    if template == CUSTOM:
        return validate_custom_image(custom_image)
    if template not in TEMPLATES:
        raise TemplateError(f"There is no template {template!r}.")
    if settings.LATTICE_LOCAL_IMAGES:
        if not template_builds_here(template):
            raise TemplateNotBuiltError(
                f"The {TEMPLATES[template].name} template's image is {NOT_BUILT}: "
                "pick another template, or a custom image.",
            )
        return local_template_image(template)
    return str(settings.LATTICE_TEMPLATE_IMAGES[template])
