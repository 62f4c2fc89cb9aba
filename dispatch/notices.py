"""The notices an order sends, worded as the municipality's routines word them (000).

"Skicka bevakning till kontaktcenter med texten 'Trygghetslarm beviljat DATUM. Kund har
fått info om nyckel och digitalt lås. Kontakta XX för installation. / FÖRNAMN EFTERNAMN
biståndshandläggare OMRÅDE'", and "'Avslut trygghetslarm DATUM. Kontakta XX för
avinstallation. ...'". XX is the day provider; the signature the needs assessor named on
the order (else none) and the site's area. A notice never holds a personal number, nor
the name or address of a customer with protected identity.
"""

from __future__ import annotations

from dataclasses import dataclass

from dispatch.models import Order, Provider, Site
from dispatch.views import MASK
from dispatch.workdays import local

CONTACT_CENTRE = "kontaktcenter"
HOME_CARE_GROUP = "hemvardsgrupp"


@dataclass(frozen=True)
class Notice:
    recipient: str
    text: str


def _signature(order: Order, site: Site | None) -> str:
    assessor = str(order.details.get("assessor") or "").strip()
    area = site.area.name if site is not None and site.area is not None else ""
    return " ".join(p for p in (assessor, "biståndshandläggare", area) if p)


def _extra_address(site: Site, protected: bool) -> str:
    if protected:
        return f"Extra {MASK}"
    door = f", namn på dörren {site.door_name}" if site.door_name else ""
    return f"Extra {site.address}{door}"


def notices_for(order: Order, provider: Provider | None, new_provider: Provider | None = None
                ) -> list[Notice]:
    day = local(order.received_at).date().isoformat()
    site = order.site or next((s for s in order.customer.sites if s.kind == "main"), None)
    xx = provider.name if provider else "utföraren"
    sign = _signature(order, site)
    if order.kind == "install":
        return [Notice(CONTACT_CENTRE,
                       f"Trygghetslarm beviljat {day}. Kund har fått info om nyckel och "
                       f"digitalt lås. Kontakta {xx} för installation. / {sign}")]
    if order.kind == "removal":
        return [Notice(CONTACT_CENTRE,
                       f"Avslut trygghetslarm {day}. Kontakta {xx} för avinstallation. "
                       f"{sign}")]
    if order.kind == "extra_alarm" and order.site is not None:
        where = _extra_address(order.site, order.customer.protected_identity)
        return [
            Notice(CONTACT_CENTRE,
                   f"Extra trygghetslarm beviljat {day}, adress {where}. Kontakta {xx} för "
                   f"installation. / {sign}"),
            Notice(HOME_CARE_GROUP,
                   f"Kunden har beviljats ett extra trygghetslarm ({where}); det hanteras "
                   f"av {xx}, som hanterar det ordinarie trygghetslarmet."),
        ]
    if order.kind == "provider_change":
        effective = order.details.get("effective_date", "")
        new = new_provider.name if new_provider else "den nya utföraren"
        return [Notice(CONTACT_CENTRE,
                       f"Byte av utförare för trygghetslarm från {effective} kl 07:00: "
                       f"{xx} lämnar, {new} tar över. {new} ska ha nycklar senast då. "
                       f"/ {sign}")]
    return []
