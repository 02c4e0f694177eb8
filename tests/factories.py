"""factory_boy factories, one per model the tests build rows of.

A factory makes the row as it stands in the database, not through the app's services: use
it to set a scene (a host with GPUs, a session that ran yesterday), and the services for
what the test is about. Rows of a team-owned model are written through the model's team
scope (``objects.for_team``), as the fail-closed manager wants; a row that belongs to
another row's team takes that team (a version its dataset's).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from decimal import Decimal
from typing import Any

import factory
from allauth.account.models import EmailAddress
from django.utils import timezone

from apps.accounts.models import TOKEN_PREFIX, TOKEN_SCOPES, PersonalAccessToken, User
from apps.billing.models import BillingAccount, MachinePrice, Plan, Subscription
from apps.datasets.models import Blob, Dataset, DatasetVersion, VersionFile
from apps.machines.models import GPUAllocation, GPUDevice, Host, MachineType, Placement
from apps.notebooks.models import Notebook, NotebookMount, NotebookSession, Status
from apps.teams.models import Invitation, Membership, Role, Team

PASSWORD = "correct horse battery staple"
GIB = 1024**3
H100 = "NVIDIA H100 80GB HBM3"


class TeamOwnedFactory(factory.django.DjangoModelFactory):
    """Writes through ``Model.objects.for_team(team)``: team-owned managers refuse a
    query made outside a team scope."""

    class Meta:
        abstract = True

    @classmethod
    def _create(cls, model_class: Any, *args: Any, **kwargs: Any) -> Any:
        team = kwargs.get("team") or kwargs["team_id"]
        return model_class.objects.for_team(team).create(*args, **kwargs)


# accounts


class UserFactory(factory.django.DjangoModelFactory):
    """A user who has signed up and verified their email address."""

    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    name = factory.Faker("name")

    @factory.post_generation
    def password(self: User, create: bool, extracted: str | None, **kwargs: Any) -> None:
        self.set_password(extracted or PASSWORD)
        if create:
            self.save(update_fields=["password"])

    @factory.post_generation
    def verified(self: User, create: bool, extracted: bool | None, **kwargs: Any) -> None:
        if create:
            EmailAddressFactory.create(
                user=self, email=self.email, primary=True, verified=extracted is not False
            )


class EmailAddressFactory(factory.django.DjangoModelFactory):
    """A further address on an account (allauth's row); unverified unless told."""

    class Meta:
        model = EmailAddress

    user = factory.SubFactory(UserFactory)
    email = factory.Sequence(lambda n: f"other{n}@example.net")
    primary = False
    verified = False


class PersonalAccessTokenFactory(factory.django.DjangoModelFactory):
    """A token with every scope; its plaintext, which the app keeps only as a hash, is on
    the row as ``plaintext`` for the test to send."""

    class Meta:
        model = PersonalAccessToken

    plaintext = factory.LazyFunction(lambda: TOKEN_PREFIX + secrets.token_hex(20))
    user = factory.SubFactory(UserFactory)
    name = "cli"
    token_hash = factory.LazyAttribute(lambda o: hashlib.sha256(o.plaintext.encode()).hexdigest())
    display_prefix = factory.LazyAttribute(lambda o: o.plaintext[: len(TOKEN_PREFIX) + 4])
    scopes = factory.LazyFunction(lambda: sorted(TOKEN_SCOPES))
    expires_at = factory.LazyFunction(lambda: timezone.now() + timedelta(days=30))

    @classmethod
    def _create(cls, model_class: Any, *args: Any, **kwargs: Any) -> Any:
        plaintext = kwargs.pop("plaintext")
        token = super()._create(model_class, *args, **kwargs)
        token.plaintext = plaintext
        return token


# teams


class TeamFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Team

    name = factory.Sequence(lambda n: f"Team {n}")
    slug = factory.Sequence(lambda n: f"team-{n}")


class MembershipFactory(TeamOwnedFactory):
    class Meta:
        model = Membership

    team = factory.SubFactory(TeamFactory)
    user = factory.SubFactory(UserFactory)
    role = Role.MEMBER


class InvitationFactory(TeamOwnedFactory):
    """A pending invitation, as if sent a moment ago (no mail goes out)."""

    class Meta:
        model = Invitation

    team = factory.SubFactory(TeamFactory)
    email = factory.Sequence(lambda n: f"invitee{n}@example.com")
    role = Role.MEMBER
    nonce = factory.LazyFunction(lambda: secrets.token_hex(16))
    expires_at = factory.LazyFunction(lambda: timezone.now() + timedelta(days=7))
    last_sent_at = factory.LazyFunction(timezone.now)


def add_member(team: Team, user: User, role: str) -> Membership:
    """Put ``user`` in ``team`` with ``role`` (fixtures only; the app goes through services)."""
    return MembershipFactory.create(team=team, user=user, role=role)


# machines


class MachineTypeFactory(factory.django.DjangoModelFactory):
    """A CPU machine type; give ``gpu_model`` and ``gpu_count`` for a GPU one."""

    class Meta:
        model = MachineType

    slug = factory.Sequence(lambda n: f"type-{n}")
    name = factory.Sequence(lambda n: f"Type {n}")
    vcpus = 2
    memory_gib = 8
    disk_gib = 20
    hourly_price = Decimal("0.1000")


class HostFactory(factory.django.DjangoModelFactory):
    """A ready host with room for a few machines and no GPUs (see GPUDeviceFactory)."""

    class Meta:
        model = Host

    name = factory.Sequence(lambda n: f"host-{n}")
    status = Host.Status.READY
    cpu_count = 64
    memory_bytes = 512 * GIB


class GPUDeviceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = GPUDevice

    host = factory.SubFactory(HostFactory)
    uuid = factory.Sequence(lambda n: f"GPU-test-{n}")
    index = factory.Sequence(lambda n: n)
    name = H100
    memory_bytes = 80 * GIB


class PlacementFactory(factory.django.DjangoModelFactory):
    """A workload placed on a host, sized as its machine type."""

    class Meta:
        model = Placement

    host = factory.SubFactory(HostFactory)
    machine_type = factory.SubFactory(MachineTypeFactory)
    workload = factory.Sequence(lambda n: f"workload-{n}")
    vcpus = factory.SelfAttribute("machine_type.vcpus")
    memory_gib = factory.SelfAttribute("machine_type.memory_gib")


class GPUAllocationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = GPUAllocation

    placement = factory.SubFactory(PlacementFactory)
    gpu = factory.SubFactory(GPUDeviceFactory, host=factory.SelfAttribute("..placement.host"))


# datasets


class DatasetFactory(TeamOwnedFactory):
    """A private dataset with no versions (see DatasetVersionFactory)."""

    class Meta:
        model = Dataset

    team = factory.SubFactory(TeamFactory)
    name = factory.Sequence(lambda n: f"Dataset {n}")
    slug = factory.LazyAttribute(lambda o: o.name.lower().replace(" ", "-"))
    visibility = Dataset.Visibility.PRIVATE


class DatasetVersionFactory(TeamOwnedFactory):
    """A ready version, numbered 1 unless told, as a completed upload leaves it (no files:
    add VersionFileFactory rows, or use tests.dataset_fixtures.make_version)."""

    class Meta:
        model = DatasetVersion

    dataset = factory.SubFactory(DatasetFactory)
    team = factory.SelfAttribute("dataset.team")
    number = 1
    status = DatasetVersion.Status.READY
    ready_at = factory.LazyFunction(timezone.now)


class BlobFactory(factory.django.DjangoModelFactory):
    """A blob row for ``data`` (its hash and size); the bytes are not stored."""

    class Meta:
        model = Blob
        exclude = ("data",)
        django_get_or_create = ("sha256",)

    data = factory.Sequence(lambda n: f"blob {n}\n".encode())
    sha256 = factory.LazyAttribute(lambda o: hashlib.sha256(o.data).hexdigest())
    size = factory.LazyAttribute(lambda o: len(o.data))


class VersionFileFactory(TeamOwnedFactory):
    class Meta:
        model = VersionFile

    version = factory.SubFactory(DatasetVersionFactory)
    team = factory.SelfAttribute("version.team")
    path = factory.Sequence(lambda n: f"file-{n}.txt")
    blob = factory.SubFactory(BlobFactory)
    size = factory.SelfAttribute("blob.size")


class NotebookMountFactory(TeamOwnedFactory):
    """``version`` mounted in ``notebook`` (the notebook's team owns the mount)."""

    class Meta:
        model = NotebookMount

    notebook = factory.SubFactory("tests.factories.NotebookFactory")
    team = factory.SelfAttribute("notebook.team")
    version = factory.SubFactory(DatasetVersionFactory)
    name = factory.SelfAttribute("version.dataset.slug")


# notebooks


class NotebookFactory(TeamOwnedFactory):
    """A stopped notebook of the scipy template on a CPU machine type."""

    class Meta:
        model = Notebook

    team = factory.SubFactory(TeamFactory)
    name = factory.Sequence(lambda n: f"Notebook {n}")
    template = "scipy"
    machine_type = factory.SubFactory(MachineTypeFactory)


class NotebookSessionFactory(TeamOwnedFactory):
    """A session of ``notebook``: queued and open unless given a status and times."""

    class Meta:
        model = NotebookSession

    notebook = factory.SubFactory(NotebookFactory)
    team = factory.SelfAttribute("notebook.team")
    machine_type = factory.SelfAttribute("notebook.machine_type")
    template = factory.SelfAttribute("notebook.template")
    image = "lattice/notebook"
    jupyter_token = factory.LazyFunction(lambda: secrets.token_hex(24))


def running_notebook(
    team: Team, name: str, *, minutes: int, hourly_price: str = "1.00"
) -> Notebook:
    """A notebook whose machine came up ``minutes`` ago on a machine type billed at
    ``hourly_price`` since then (a MachinePrice row): what a page prices as running."""
    machine = MachineTypeFactory.create(hourly_price=Decimal(hourly_price))
    started = timezone.now() - timedelta(minutes=minutes)
    MachinePriceFactory.create(
        machine_type=machine, hourly_price=Decimal(hourly_price), effective_from=started
    )
    notebook: Notebook = NotebookFactory.create(
        team=team, name=name, machine_type=machine, status=Status.RUNNING
    )
    NotebookSessionFactory.create(
        notebook=notebook,
        status=Status.RUNNING,
        started_at=started,
        ready_at=started,
    )
    return notebook


# billing


class PlanFactory(factory.django.DjangoModelFactory):
    """A paid plan with room to spare (the seeded plans come from billing_plans)."""

    class Meta:
        model = Plan

    slug = factory.Sequence(lambda n: f"plan-{n}")
    name = factory.Sequence(lambda n: f"Plan {n}")
    monthly_price = Decimal("20.00")
    max_running_notebooks = 5
    storage_gib = 100
    seats = 10
    max_session_hours = 24


class MachinePriceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = MachinePrice

    machine_type = factory.SubFactory(MachineTypeFactory)
    hourly_price = Decimal("1.0000")
    effective_from = factory.LazyFunction(timezone.now)


class BillingAccountFactory(TeamOwnedFactory):
    class Meta:
        model = BillingAccount

    team = factory.SubFactory(TeamFactory)
    stripe_customer_id = factory.Sequence(lambda n: f"cus_test{n}")


class SubscriptionFactory(TeamOwnedFactory):
    """An active subscription to ``plan`` as last fetched from Stripe."""

    class Meta:
        model = Subscription

    team = factory.SubFactory(TeamFactory)
    stripe_id = factory.Sequence(lambda n: f"sub_test{n}")
    stripe_customer_id = factory.Sequence(lambda n: f"cus_test{n}")
    plan = factory.SubFactory(PlanFactory)
    status = Subscription.Status.ACTIVE
    current_period_start = factory.LazyFunction(timezone.now)
    current_period_end = factory.LazyFunction(lambda: timezone.now() + timedelta(days=30))
