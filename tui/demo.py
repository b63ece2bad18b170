"""The offline demo: a generated e-commerce support inbox, its taxonomy and its config.

It is the first thing a user sees, so the tickets read like a real inbox: many templates per
department, greetings and signatures, quoted replies, typos, angry capitals, one-liners and
rambling letters, requests that touch two departments, a few genuinely ambiguous ones, and
agents who sometimes mislabel. That keeps a specialist trained on the labelled part good but
visibly imperfect, which is the trade-off the app exists to show. Only `random.Random(seed)`
is used, so one seed always gives the same inbox.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tui.models import Label, Taxonomy, Ticket

STORE = "Brightcart"

DEMO_LABELS: dict[str, str] = {
    "billing": "Charges, invoices, payment methods, double charges, promo codes and price "
    "adjustments",
    "shipping": "Delivery status, tracking, delays, lost, stolen or damaged parcels, carriers "
    "and customs",
    "returns_refunds": "Returning or exchanging received items, return labels, refunds for "
    "returned goods",
    "order_changes": "Cancelling or changing an order before it ships: address, size, items, "
    "quantity, delivery options",
    "account_access": "Login, password resets, two-factor codes, locked or hacked accounts, "
    "account e-mail and deletion",
    "product_question": "Questions before buying: sizing, compatibility, stock, materials, "
    "care, warranty",
    "technical_issue": "Website or app bugs: checkout errors, crashes, pages or buttons that "
    "don't work",
    "complaints": "Dissatisfaction with service, staff or quality; escalations and formal "
    "complaints",
}
"""Eight departments of an online shop, with the descriptions the LLM prompts use."""

_WEIGHTS = {
    "billing": 13,
    "shipping": 22,
    "returns_refunds": 17,
    "order_changes": 12,
    "account_access": 9,
    "product_question": 10,
    "technical_issue": 9,
    "complaints": 8,
}
"""Shares of the inbox: where-is-my-order dominates real e-commerce queues."""

_CONFUSIONS = {
    "billing": ("returns_refunds", "technical_issue", "order_changes"),
    "shipping": ("returns_refunds", "complaints", "order_changes"),
    "returns_refunds": ("billing", "shipping", "order_changes"),
    "order_changes": ("shipping", "returns_refunds", "billing"),
    "account_access": ("technical_issue", "billing"),
    "product_question": ("returns_refunds", "order_changes", "technical_issue"),
    "technical_issue": ("account_access", "billing"),
    "complaints": ("shipping", "returns_refunds", "billing"),
}
"""The labels a hurried agent picks instead of the right one."""


def _blocks(text: str) -> tuple[str, ...]:
    """Templates separated by blank lines; lines of one template join with a space, and
    ` // ` starts a new paragraph. Keeps hundreds of templates readable and under 100 columns."""
    out = []
    for block in text.strip().split("\n\n"):
        joined = " ".join(line.strip() for line in block.strip().splitlines())
        out.append(joined.replace(" // ", "\n\n"))
    return tuple(out)


def _lines(text: str) -> tuple[str, ...]:
    return tuple(line.strip() for line in text.strip().splitlines() if line.strip())


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


def _weighted(text: str) -> tuple[tuple[dict[str, float], str], ...]:
    """Blocks whose first line is `label:weight ...` and whose rest is the template."""
    out = []
    for block in text.strip().split("\n\n"):
        head, rest = block.strip().split("\n", 1)
        weights = {name: float(w) for name, w in (pair.split(":") for pair in head.split())}
        out.append((weights, " ".join(rest.split())))
    return tuple(out)


_TEMPLATES: dict[str, tuple[str, ...]] = {
    "billing": _blocks("""
I was charged twice for order {order}. My bank statement shows two payments of {amount} on {date}.
Please refund the duplicate charge.

Can I get a proper VAT invoice for order {order}? I need it for my expenses and the invoice in
the confirmation email doesn't show the company name ({company}).

My card ending in {last4} was charged {amount} on {date} but I never placed an order with you
that day. What is this charge for?

The promo code {code} didn't apply at checkout and I ended up paying full price ({amount}).
Can you refund the difference please?

I was billed {amount} for shipping even though the site clearly said free shipping over $50.
Order {order}, total was well over that.

Why was my card charged {amount} when the order total on the confirmation page was {amount2}?
Nobody told me about any extra fees.

How do I update the credit card on file? My old one expired and now the payment for my
{membership} membership failed.

I cancelled my {membership} membership last month but I was still charged {amount} on {date}.
Please refund it and make sure it doesn't happen again.

Could you send me a copy of the invoice for {order}? I can't find it anywhere in my account and
my accountant needs it.

Can I pay with Klarna in 4 instalments? I only see card and PayPal at checkout for a {amount}
order.

There's still a pending charge of {amount} from you on my card {days} days after my order was
cancelled. When does the authorisation drop off?

The invoice for {order} has my old billing address on it. Can you reissue it with {address}?

I was charged in euros instead of dollars and my bank added a foreign transaction fee. The
order was {order}.

I used a gift card for part of the payment but the full {amount} was taken from my credit card
anyway. Gift card balance still shows the same.

The price of the {product} dropped by {amount} three days after I bought it. Do you do price
adjustments?

Sales tax was added to my order {order} but we are a tax exempt nonprofit. I can send the
exemption certificate again. Please refund the tax of {amount}.

You charged me for {qty} {product}s but I only ordered one. Order {order}, card ending {last4}.

My payment was declined three times so I gave up, and now my banking app shows three holds of
{amount} each! Please release them.

Customer service gave me a store credit of {amount} last week but it isn't showing up in my
account balance at checkout.

I need a receipt that shows the amount paid and the date for order {order}, for a warranty
claim with my insurance.

PayPal shows I paid {amount} for order {order} but your email says the payment is still
pending. Did the payment go through or not?

Your invoice numbering skips and my finance team is asking why invoice for {order} has a
different total ({amount2}) than what was actually charged ({amount}).

I'd like to change how I get billed for the subscription, from monthly to yearly, and get the
yearly discount.

The {code} discount was applied to only one item instead of the whole cart, so I was
overcharged by about {amount}.
"""),
    "shipping": _blocks("""
Where is my order {order}? It's been {days} days and the tracking still says "label created".

Tracking for {order} says delivered on {date} but I never received anything. I checked with
the neighbours and around the building.

My package is stuck in {city} according to {carrier}, it hasn't moved since {date}. Can you
find out what's going on?

Can you give me the tracking number for order {order}? The shipping confirmation email didn't
have one, just a button that doesn't work.

The {carrier} driver left my parcel outside in the rain and the box was soaked through when I
got home. The {product} inside is ok I think but the packaging is ruined.

Order {order} was supposed to arrive by {date} with express shipping, which I paid {amount}
extra for. Still nothing and tracking shows no updates.

Only part of my order arrived. The {product} is missing even though it's on the packing slip
that was in the box.

The tracking number {tracking} isn't recognised on the {carrier} website. Did you send me the
wrong one?

{carrier} says the address is incomplete and they're sending the package back to you. The
address on the order is correct, I've checked.

I missed the delivery twice. Can I pick the parcel up from the {carrier} depot instead?
Tracking {tracking}.

My order came in two boxes. One arrived on {date} but the other has been "in transit" for
{days} days now.

The box arrived completely crushed and the {product} inside is broken. The outer box was
clearly dropped or run over. Photos attached.

The delivery photo shows a door that isn't mine. It was delivered to the wrong address.
Order {order}.

When will order {order} ship? I ordered {days} days ago and it still says processing.

{carrier} is asking me to pay {amount} in import duties before they deliver. Nobody said
anything about customs when I ordered.

Tracking hasn't updated in over a week, last scan was in {city} on {date}. Is the parcel lost?

The estimated delivery date for {order} keeps moving, first it was {date} and now it says
{date2}. What's going on?

I need the {product} before {date} for my son's birthday. Can you check whether order {order}
will arrive in time?

The tracking says "delivery attempted" but I was home all day and nobody knocked or rang.
No card left either.

{carrier} needs a signature and I can't be home during the day. Can they leave it with a
neighbour or at a pickup point?

{carrier} has marked my package as lost. What happens now, do you send a replacement? Order
{order}.

Do you ship to {country}? And how long does delivery usually take there?

My parcel was delivered to the building's front desk but they say it never came. Tracking
{tracking} shows delivered at 2:14pm.

Order {order} says shipped but the tracking just says "awaiting item" for {days} days. Has it
actually been sent?
"""),
    "returns_refunds": _blocks("""
I'd like to return the {product} from order {order}, it doesn't fit. How do I get a return
label?

I sent my return back {days} days ago ({carrier} tracking {tracking}) and still haven't
received my refund. Can you check?

I ordered the {product} in {color}, size {size}, and got a completely different colour. Can I
exchange it for the right one?

Can I return an item that was bought on sale? The {product} doesn't suit me.

The returns portal says my order {order} is not eligible for return, but it's only been {days}
days since it arrived.

The {product} stopped working after two weeks of normal use. I want a refund, not a repair.

My refund for {order} was only {amount} but I paid {amount2}. Why was a restocking fee taken?
That was never mentioned.

I returned two items in the same parcel but I've only been refunded for one of them.

Can I exchange the {product} for a size {size2} instead of getting a refund?

The return label link in the email has expired and won't print. Can you send a new one?

I received the wrong item. I ordered the {product} and got a {product2} instead. How do I send
it back?

Is return shipping free? The return label is charging me {amount} which seems unfair since
the item is faulty.

I dropped the return off at {carrier} on {date}. How long until the refund shows on my card?

The {product} was a gift. Can the refund go on a gift card instead of back to the original
card?

The {product} arrived with the stitching coming apart on one side. I'd like to send it back
for a full refund.

Do I need the original box to return the {product}? I already threw the packaging away.

You confirmed you received my return on {date} but the refund status is still "processing".
It's been {days} days.

I want to return the whole of order {order}, none of it looks like the photos on the site.

Can I return the {product} to one of your stores instead of posting it?

My return was rejected because the item was "used" but I only tried it on once indoors.

My refund went to a card I've since cancelled. What happens to the money?

I'm a couple of days outside the 30 day return window for the {product}. Could you make an
exception? I was travelling.

You sent a replacement for the faulty {product} but the replacement has the same problem. I'd
rather have my money back now.

The {product} I got looks second hand, there are scratches and someone else's hair on it. I
want to send it back.
"""),
    "order_changes": _blocks("""
I just placed order {order} and realised I put my old shipping address. Can you change it to
{address}?

Please cancel order {order}, I ordered it by mistake. It hasn't shipped yet.

Can I add a {product} to my order {order} before it ships? Don't want to pay shipping twice.

I need to change the size of the {product} in order {order} from {size} to {size2}, please.

Can I upgrade order {order} to express shipping? It still says processing so it hasn't left
yet.

I accidentally ordered {qty} of the {product}, I only wanted one. Can you change the quantity
before it ships?

Please remove the {product} from my order {order} but keep the rest of the items.

I'll be away from {date} to {date2}. Can you hold my order and ship it after that?

Please skip next month's box on my subscription, I still have plenty.

Could you change the colour of the {product} on order {order} to {color}? Just placed it
{hours} hours ago.

I placed the same order twice by accident ({order} and {order2}). Please cancel one of them.

Can you combine my two orders {order} and {order2} into one shipment? They're going to the
same address.

Please add gift wrapping and a note saying "Happy birthday Mum" to order {order}.

Is it too late to cancel {order}? The status still says processing.

The apartment number on order {order} is wrong, it's apt {apt}, not {apt2}. Please fix it
before it ships.

Can I change the engraving text on the {product}? I spelled the name wrong when I ordered
this morning.

Please cancel my order if it can't ship by {date}, I won't need it after that.

Part of my order is backordered. Please ship what's in stock now and cancel the {product}.

I'd like to change delivery on order {order} to a pickup point instead of my home address.

Can I swap the {product} in my order for the {product2}? Same price, I just changed my mind.

I pre-ordered the {product} but it's now in stock in a different colour, can you change my
pre-order to that one and send it now?

Please change the name on order {order} to my husband's, it's a gift and he'll be receiving
it.

My order {order} is still pending, please change the delivery option from standard to
next-day, I'm happy to pay the difference.
"""),
    "account_access": _blocks("""
I can't log in to my account. I reset my password but the reset email never arrives, not even
in spam.

My account is locked after too many login attempts. How long until I can try again?

I don't get the two-factor code by text anymore because I changed my phone number. How do I
get back into my account?

Please change the email address on my account from {email_old} to {email}.

Please delete my account and all personal data you hold about me, as per GDPR.

Someone logged into my account and changed the email address. I think I've been hacked, there
is also an order I didn't place.

The password reset link says it has expired every single time I click it, even straight away.

I signed up with my Google account but now want a normal email and password login. How do I
set a password?

I have two accounts with different emails. Can you merge them so I see all my orders in one
place?

When I log in my order history is empty, but I've ordered lots of times with this email.

The login keeps saying "invalid credentials" but I'm 100% sure the password is right. I even
reset it twice.

I created an account but the verification email never came so I can't log in.

How do I change my password? I can't find it anywhere in the account settings.

My loyalty points disappeared from my account after I changed my email address.

I forgot which email I used to register. My name is {name} and my phone number ends in {last4}.

Sign in with Apple doesn't work anymore since I got a new phone. It just says account not
found.

Please remove my saved card and old addresses from my account profile.

I'm trying to register and it says "email already in use" but I never made an account with you.

I keep getting password reset emails that I didn't request. Is someone trying to get into my
account?

My account was deactivated and I got no explanation. I have store credit on it!

I want to change the phone number on my account but the page asks for a code sent to the old
number, which I no longer have.

Your system logged me out and now asks me to verify my identity with a code sent to
{email_old}, an address I don't use anymore.

I'm locked out of my business account and I'm the only admin. Nobody on the team can get in.
"""),
    "product_question": _blocks("""
Is the {product} true to size? I'm usually a {size} in most brands.

What comes in the box with the {product}? Does it include a charger or do I need to buy one?

When will the {product} in {color} be back in stock? I've been waiting for weeks.

Is the {product} compatible with my {device}?

What is the {product} made of? I'm allergic to wool so I need to know before I buy.

Is the {product} dishwasher safe or hand wash only?

What are the exact dimensions of the {product}? I need to know if it fits in a 60 cm space.

What warranty comes with the {product}, and is it international?

What's the difference between the {product} and the Pro version? Is it worth the extra {amount}?

Do you sell replacement parts or filters for the {product}? Mine is a couple of years old.

Is the {product} suitable for a 3 year old? The page doesn't mention an age range.

Will the {product} work in {country}, do I need an adapter for the plug?

Is the {product} vegan? I couldn't find anything about the materials or whether it's tested on
animals.

Can the {product} be personalised or engraved? I'd like to give it as a gift.

Is there a discount if I buy 15 of the {product} for my team?

Is the {product} actually waterproof or just water resistant? I want to use it for hiking in
the rain.

How should I wash the {product}? The label is tiny and already faded.

Will the {product} go on sale for Black Friday? I don't want to buy it now and see it cheaper
in two weeks.

A lot of reviews say the {product} runs small. Should I size up to {size2}?

Where is the {product} made? I try to buy things made in Europe.

Does the {product} come in a wider fit? I have wide feet and the regular ones pinch.

How heavy is the {product}? I need to carry it up three flights of stairs.

Can the {product} be used outdoors all year, or will it rust?

Do you have the {product} in {color}? The picture only shows black and grey.
"""),
    "technical_issue": _blocks("""
Checkout keeps failing with "Something went wrong, please try again" when I click Place
order. I tried {browser} and the app.

The app crashes every time I open my cart on my {device}. Already reinstalled it.

Your website won't load past the spinning wheel in {browser}. Other sites work fine.

I get an error 500 when I try to apply the code {code} at checkout.

Images on the product pages aren't loading, just grey boxes everywhere.

The card number field on the payment page goes red and won't accept my number even though
it's definitely correct. Tried on {browser} and {device}.

The Add to cart button doesn't do anything on the {product} page. No error, just nothing.

The size dropdown is greyed out on every product I look at, so I can't buy anything.

Since the latest app update (version {version}) the login screen just goes blank.

Search on your site returns "no results" for everything, even "shoes".

The site keeps redirecting me in a loop between the login page and the cart.

The app says "no internet connection" but every other app on my {device} works fine.

The 3D Secure window never pops up so the payment times out every time.

Items in my wishlist disappear when I refresh the page.

Your site is stuck showing prices in pounds and the country selector doesn't do anything when
I change it.

The order confirmation page showed an error message after I paid. I don't know if my order
went through.

The Apple Pay button is missing on my {device} in Safari, it used to be there.

Address autocomplete puts in the wrong postcode and then I can't edit the field.

I keep getting a "session expired" error every few seconds while browsing.

On mobile the live chat bubble covers the Checkout button so I can't tap it.

The "download invoice" link in my account gives a 404 page.

The app shows my cart as empty on the {device} but on the website it has 4 items.

The page where I'm supposed to reset my preferences throws a JavaScript error in the
console, something like "undefined is not a function". Using {browser}.

Your app freezes on the payment step on {device} and I have to force quit it.
"""),
    "complaints": _blocks("""
I'm extremely disappointed with your service. I've contacted you {n} times about order {order}
and nobody has given me a real answer.

The agent I spoke to on the phone yesterday, {agent}, was incredibly rude and hung up on me.

The quality of the {product} is terrible compared to what you used to sell. I've been a customer
for {years} years and this is embarrassing.

I want to make a formal complaint about how my case has been handled. I expect a written
response from a manager.

This is the third time in a row one of my orders has been late. I'm done with your company.

Your chat bot just goes around in circles. I want to talk to a real human being.

Your packaging is ridiculous. A tiny {product} came in a huge box full of plastic air pillows.

I was promised a callback within 24 hours. That was {days} days ago and nobody has called.

I'll be leaving a one-star review everywhere and reporting you to consumer protection.

The photos on your site are misleading, the {product} looks nothing like them in real life.

Your customer service closed my ticket as "resolved" without fixing anything.

I've been told three different things by three different agents about the same issue.

The staff in your {city} store were unhelpful and made me feel like a nuisance.

Your returns policy is unfair and it's hidden in the small print. I'm not happy at all.

Your so-called "premium" {product} fell apart within a week. Shameful quality for the price.

I want compensation for all the time I've wasted chasing this up.

Please escalate this to a manager. I'm not accepting another copy-and-paste answer.

I was on hold on your phone line for 90 minutes and then got cut off.

I've been a loyal member for {years} years and honestly I feel completely taken for granted.

I just want to give feedback: the whole experience this time was stressful from start to
finish and nobody seemed to care.

Your marketing emails promise "exceptional service" and what I got was the opposite. Very poor.

I'm writing to complain about your delivery partner's driver, who threw my parcel over the
gate and was rude when I said something.

Nobody at {store} reads these messages, do they? Third email, zero replies.
"""),
}

_SHORT: dict[str, tuple[str, ...]] = {
    "billing": _lines("""
why was i charged twice??
need an invoice for {order}
charged twice!!
what is this {amount} charge on my card
promo code {code} didnt work, i paid full price
refund the double charge pls
can i pay with paypal?
"""),
    "shipping": _lines("""
where is my order??
where is my package
tracking not updating
order {order} status?
still not delivered
package says delivered. it wasn't
has my order shipped yet
when will {order} arrive
"""),
    "returns_refunds": _lines("""
how do i return something
return label pls
want to exchange for a bigger size
where is my refund for the return
how long do refunds take after you get the return?
wrong item received
"""),
    "order_changes": _lines("""
cancel my order
pls cancel {order}
wrong address on my order, can you change it
can i still change my order?
change size to {size} please
add one more to my order
"""),
    "account_access": _lines("""
cant log in
password reset not working
locked out of my account
delete my account
2fa code not arriving
forgot my password
"""),
    "product_question": _lines("""
is this in stock?
does it come in {color}?
is the {product} true to size?
is it dishwasher safe?
what size should i get
any restock date for the {product}?
"""),
    "technical_issue": _lines("""
checkout broken
app keeps crashing
is the site down?
error at checkout
page wont load
add to cart button not working
"""),
    "complaints": _lines("""
worst service ever
i want to speak to a manager
this is unacceptable
never ordering again
terrible experience
absolute joke of a company
"""),
}

_SECONDARY: dict[str, tuple[str, ...]] = {
    "billing": _lines("""
Also, I think I was charged twice for this, can you check my card?
And please send me an invoice for it as well.
Also the promo code {code} didn't apply, so I'd like the price difference back.
On top of that I was charged {amount} for shipping which I shouldn't have been.
"""),
    "shipping": _lines("""
Also my other order {order2} still hasn't arrived, can you check that one too?
And can you tell me where my other package is? Tracking hasn't moved.
Separately, the last parcel took {days} days to arrive which is way too long.
"""),
    "returns_refunds": _lines("""
Also, how do I return the {product2} from the same order?
Separately, I'm still waiting for the refund on my last return.
I'd also like to send back the {product2}, it doesn't fit.
"""),
    "order_changes": _lines("""
Also, can you cancel the {product2} from order {order2} if it hasn't shipped yet?
And please change the address on my other open order to {address}.
Also could you add a second {product2} to the order before it goes out?
"""),
    "account_access": _lines("""
Also I can't log into my account to check this myself, the reset email never comes.
And please update the email on my account to {email} while you're at it.
I would check it myself but I'm locked out of my account.
"""),
    "product_question": _lines("""
Also, is the {product2} available in {color}?
Quick question too: is the {product2} true to size?
And does the {product2} work with a {device}?
"""),
    "technical_issue": _lines("""
By the way your website kept giving me errors when I tried to sort this out myself.
Also the app crashes whenever I open my orders page.
I tried to do this online but the page just kept spinning.
"""),
    "complaints": _lines("""
Honestly the whole experience has been really disappointing.
This is the second time this has happened and I'm getting fed up.
I have to say your service has gone downhill a lot.
"""),
}
"""Add-on sentences for requests that touch a second department."""

_AMBIGUOUS = _weighted("""
returns_refunds:.55 billing:.45
My refund still hasn't shown up on my card for order {order}.

shipping:.4 returns_refunds:.6
The {product} arrived broken. What do I do now?

order_changes:.55 returns_refunds:.45
I want to cancel order {order} and get my money back.

technical_issue:.5 billing:.5
My payment keeps failing at checkout, tried two different cards.

billing:.5 technical_issue:.5
I was charged {amount} but got no order confirmation at all.

shipping:.5 complaints:.5
The parcel came a week late and the box was battered. Not happy.

account_access:.6 shipping:.4
I can't log in to see where my order is. Can you tell me?

shipping:.5 order_changes:.5
Can I still change the delivery address? {carrier} says it's on the way.

returns_refunds:.7 order_changes:.3
Got the wrong size, can you just send the right one?

shipping:.6 order_changes:.4
Is there any way to get order {order} faster? I need it by {date}.

shipping:.5 billing:.5
I paid {amount} for shipping and the item never even arrived.

billing:.5 technical_issue:.5
Your site charged me in the wrong currency.

billing:.5 technical_issue:.5
The discount code {code} doesn't work.

returns_refunds:.5 complaints:.3 product_question:.2
The {product} isn't what the website described.

billing:.5 product_question:.5
Do you price match? I saw the {product} for {amount} less elsewhere.

technical_issue:.4 account_access:.3 shipping:.3
I never got the email with my order details.

billing:.6 account_access:.4
I need to update the card on my account for the subscription.

order_changes:.5 technical_issue:.3 billing:.2
Order {order} shows cancelled but I didn't cancel it.

complaints:.5 returns_refunds:.5
Third faulty {product} in a row. I've had enough of this.

product_question:.5 returns_refunds:.5
Will a size {size2} fit better? The {size} I got is tight.
""")
"""Tickets a careful human could file under either label; the weights pick the true one."""

_SUBJECTS: dict[str, tuple[str, ...]] = {
    "billing": _lines("""
Double charge on my card
Invoice request for {order}
Unknown charge
Promo code not applied
Overcharged
Billing question
Payment issue order {order}
Refund of duplicate payment
"""),
    "shipping": _lines("""
Where is my order?
Order {order} not delivered
Tracking not updating
Package missing
Delivery problem
Late delivery
Parcel marked delivered but not received
Shipping status
"""),
    "returns_refunds": _lines("""
Return request
Refund not received
Exchange for a different size
Return label
Wrong item received
Faulty item - refund please
Return for order {order}
"""),
    "order_changes": _lines("""
Cancel order {order}
Change shipping address
Change my order
Order modification
Wrong size ordered
Please cancel
Add item to order
"""),
    "account_access": _lines("""
Can't log in
Password reset
Account locked
Delete my account
Account hacked?
Login problem
Change email on account
"""),
    "product_question": _lines("""
Question about the {product}
Sizing question
Back in stock?
Product compatibility
Before I buy
Question
"""),
    "technical_issue": _lines("""
Checkout error
App crashing
Website not working
Error when paying
Bug report
Site problem
"""),
    "complaints": _lines("""
Complaint
Very disappointed
Formal complaint
Terrible service
Unacceptable
Escalation needed
"""),
}
_GENERIC_SUBJECTS = _lines("""
Help
Question
Order {order}
Re: Your {store} order {order}
URGENT
Customer enquiry
Hello
Re: Re: Order update
Fw: order
Please help!!
""")
_FORM_TOPICS = ("Order enquiry", "Other", "My account", "Payments", "Delivery", "Returns")

_GREETINGS = _lines("""
Hi,
Hello,
Hi there,
Dear Customer Service,
Good morning,
Hey,
To whom it may concern,
Hi team,
Hello {store} support,
Dear Sir or Madam,
Hiya,
Good afternoon,
""")
_SIGNOFFS = _lines("""
Thanks,|{first}
Regards,|{first} {last}
Cheers, {first}
Thank you in advance!
Best,|{first}
Looking forward to your reply.
Thx
Kind regards,|{first} {last}
Many thanks,|{first}
Please get back to me asap.
Thanks for your help
""")
_MOBILE = _lines("""
Sent from my iPhone
Sent from my Galaxy
Get Outlook for Android
Sent from Yahoo Mail on Android
Sent from my iPad
""")
_SIGNATURE_ROLES = _lines("""
Office Manager
Senior Accountant
Teacher
Project Coordinator
Freelance Designer
Operations Lead
""")
_FILLER = _lines("""
I've been a loyal customer for years and never had a problem before.
I know you're probably busy but this is really important to me.
I already tried calling but the line was busy for ages.
To be honest I'm not very good with computers so sorry if this is obvious.
My partner says I should just wait but I'd rather sort it out now.
I looked in the FAQ but couldn't find anything about this.
This was supposed to be a present so the timing matters.
I work night shifts so email is the best way to reach me.
Sorry for the long message, I just want to explain everything properly.
I also mentioned this in the chat last week but I never heard back.
I ordered from you because a friend recommended you and I had always had good experiences.
Last time something similar happened it took three emails and two phone calls to sort out.
We're moving house at the end of the month, so things are a bit chaotic here at the moment.
I've been checking my email every day and refreshing the tracking page, which isn't fun.
I'm writing this on my lunch break so apologies if it's a bit all over the place.
I don't want to sound rude, I know it's not your fault personally, but I'm frustrated.
I honestly don't know who else to contact, the website just sends me round in circles.
""")
_ANGRY = _lines("""
THIS IS RIDICULOUS.
I AM SO FED UP WITH THIS.
ANSWER ME!!!
WHAT IS GOING ON???
UNBELIEVABLE.
""")
_AGENT_QUOTES: dict[str, tuple[str, ...]] = {
    "billing": _lines("""
I've checked with our payments team and can see one charge of {amount} on our side.
Your invoice is attached to this email.
"""),
    "shipping": _lines("""
Your parcel is with {carrier} and should arrive within 3-5 business days.
I've opened an investigation with the carrier and will update you within 48 hours.
"""),
    "returns_refunds": _lines("""
Your return has been received and your refund will be processed within 5-7 business days.
I've emailed you a prepaid return label, please drop the parcel at any {carrier} location.
"""),
    "order_changes": _lines("""
I've updated your order as requested; you'll get a new confirmation shortly.
Unfortunately the order has already been packed so we can't change it anymore.
"""),
    "account_access": _lines("""
I've sent a password reset link to the email address on your account.
For security reasons we need to verify your identity before changing account details.
"""),
    "product_question": _lines("""
The {product} is true to size and machine washable at 30 degrees.
"""),
    "technical_issue": _lines("""
Could you try clearing your browser cache and cookies and placing the order again?
Our developers have fixed the issue, could you please try again?
"""),
    "complaints": _lines("""
I'm sorry to hear about your experience and I've passed your feedback to the team.
"""),
}
_AGENT_GENERIC = _lines("""
Thanks for reaching out. Could you send us your order number so we can look into this?
Thank you for your patience while we look into this.
Is there anything else I can help you with?
""")

_FIRST = _words(
    """Emma Liam Olivia Noah Ava Ethan Sophia Mason Isabella Lucas Mia Oliver Amelia James
    Harper Benjamin Evelyn Elijah Abigail Henry Emily Alexander Ella Daniel Grace Michael Chloe
    Samuel Zoe Jack Priya Arjun Mei Wei Fatima Omar Sofia Mateo Lena Jonas Aisha Kwame Yuki
    Hiro Chiara Luca Ines Diego Hannah Tom Sarah Mark Laura Paul Nina Ben Kate Raj Anna
    Pierre"""
)
_LAST = _words(
    """Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez
    Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Thompson White Harris Clark Lewis
    Walker Hall Young King Wright Scott Green Baker Adams Nelson Patel Khan Nguyen Kim Chen
    Muller Schmidt Rossi Dubois Novak Silva Okafor Mensah Tanaka Sato Kowalski Jensen
    O'Brien Murphy Fischer Costa"""
)
_MAIL_DOMAINS = (
    "gmail.com", "yahoo.com", "outlook.com", "hotmail.com", "icloud.com", "proton.me",
    "gmx.de", "web.de", "aol.com", "live.co.uk",
)  # fmt: skip
_PRODUCTS = (
    "Aurora wireless headphones", "merino wool sweater", "Trailblazer hiking boots",
    "4-slice toaster", "standing desk", "cork yoga mat", "iPhone 15 case", "linen duvet cover",
    "espresso machine", "kids' rain jacket", "smartwatch band", "cast iron skillet",
    "Nimbus running shoes", "down puffer jacket", "robot vacuum", "bamboo bath towels",
    "air fryer", "LED desk lamp", "leather crossbody bag", "ergonomic office chair",
    "Bluetooth speaker", "slim fit chinos", "stainless steel water bottle", "weighted blanket",
    "electric toothbrush", "ceramic dinner set", "baby carrier", "gaming mouse",
    "portable charger", "wool beanie", "denim jacket", "blender",
)  # fmt: skip
_CARRIERS = ("UPS", "FedEx", "USPS", "DHL", "Royal Mail", "DPD", "Evri", "Canada Post", "GLS")
_CITIES = (
    "Memphis", "Louisville", "Leipzig", "Newark", "Chicago", "Toronto", "Birmingham",
    "Rotterdam", "Dallas", "Atlanta", "Ontario CA", "Coventry",
)  # fmt: skip
_COUNTRIES = ("Canada", "Ireland", "Germany", "Australia", "Norway", "Mexico", "Switzerland")
_COLORS = ("navy", "black", "olive green", "sand", "burgundy", "grey marl", "white", "pink")
_SIZES = ("XS", "S", "M", "L", "XL", "size 9", "EU 42", "size 12", "UK 6", "32/32")
_DEVICES = (
    "iPhone 13", "iPhone 15 Pro", "Pixel 7", "Samsung Galaxy S22", "iPad Air", "MacBook Air",
    "Windows laptop", "OnePlus 11", "Galaxy Tab",
)  # fmt: skip
_BROWSERS = ("Chrome", "Safari", "Firefox", "Edge", "Brave")
_CODES = ("SPRING20", "WELCOME10", "FREESHIP", "VIP15", "SUMMER25", "BFCM30", "THANKYOU")
_MEMBERSHIPS = ("Plus", "Premium", "Brightcart+", "VIP")
_AGENTS = ("Jess", "Mark", "Sam", "Alex", "Dana", "Chris", "Taylor")
_COMPANIES = ("Hartley Design Ltd", "Greenleaf GmbH", "Orbit Analytics", "Fairview Dental")
_STREETS = ("Maple Ave", "High Street", "Elm Road", "Baker Street", "Cedar Lane", "Park Road")
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH_NAMES = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)  # fmt: skip
_DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_KEYBOARD_NEIGHBOURS = {
    "a": "sq", "e": "wr", "i": "uo", "o": "ip", "n": "bm", "r": "et", "s": "ad", "t": "ry",
    "l": "k", "d": "sf", "h": "gj", "u": "yi", "c": "xv", "m": "n", "g": "fh", "y": "tu",
}  # fmt: skip


_P_AMBIGUOUS = 0.15
"""Share of genuinely ambiguous tickets; with mixed requests they set the specialist's ceiling."""
_P_SHORT = _P_AMBIGUOUS + 0.09
_P_LONG = _P_SHORT + 0.07
_P_MIXED = 0.25


@dataclass(frozen=True)
class DemoTicket:
    """A generated ticket with the label it truly belongs to and what an agent recorded."""

    ticket: Ticket
    true_label: str
    """The department the ticket really belongs to: the yardstick for accuracy."""
    agent_label: str | None
    """The label an agent gave it (None when unlabelled); wrong about 3% of the time."""


def demo_taxonomy() -> Taxonomy:
    """The demo's taxonomy, in DEMO_LABELS order, with descriptions for the LLM prompts."""
    return Taxonomy(labels=tuple(Label(name=k, description=v) for k, v in DEMO_LABELS.items()))


def generate_inbox(
    n: int = 3000,
    *,
    seed: int = 7,
    labelled_fraction: float = 1 / 3,
    now: datetime | None = None,
) -> list[DemoTicket]:
    """Generate a realistic support inbox, a fraction of it labelled by agents.

    Args:
        n: Number of tickets.
        seed: Same seed (and `now`) gives the same inbox, ticket for ticket.
        labelled_fraction: Share of tickets that carry an agent label.
        now: End of the 30-day window the tickets were sent in; today at 00:00 UTC when None,
            so the inbox looks recent yet stays identical within a day.

    Returns:
        The tickets, oldest first, with ids DEMO-000001 onwards.
    """
    if n < 0 or not 0.0 <= labelled_fraction <= 1.0:
        raise ValueError("n must be >= 0 and labelled_fraction within [0, 1]")
    rng = random.Random(seed)
    end = now or datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    offsets = sorted((rng.uniform(0, 30 * 86400) for _ in range(n)), reverse=True)
    labelled = set(rng.sample(range(n), round(n * labelled_fraction)))
    labels = list(_WEIGHTS)
    weights = list(_WEIGHTS.values())
    inbox: list[DemoTicket] = []
    for index in range(n):
        created = end - timedelta(seconds=round(offsets[index]))
        true_label, subject, body, channel, customer = _compose(
            rng, rng.choices(labels, weights)[0], created
        )
        agent_label: str | None = None
        if index in labelled:
            agent_label = true_label
            if rng.random() < 0.03:
                agent_label = rng.choice(_CONFUSIONS[true_label])
        text = f"{subject}\n\n{body}" if subject else body
        ticket = Ticket(
            id=f"DEMO-{index + 1:06d}",
            text=text,
            subject=subject,
            customer=customer,
            channel=channel,
            created_at=created,
            received_at=created + timedelta(seconds=rng.randint(2, 90)),
            meta={"source": "demo"},
        )
        inbox.append(DemoTicket(ticket=ticket, true_label=true_label, agent_label=agent_label))
    return inbox


def _compose(rng: random.Random, label: str, created: datetime) -> tuple[str, str, str, str, str]:
    """One ticket: (true label, subject, body, channel, customer e-mail)."""
    channel = rng.choices(("email", "chat", "web"), (55, 25, 20))[0]
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    slots = _slots(rng, first, last, created)
    kind = rng.random()
    other = rng.choice([name for name in DEMO_LABELS if name != label])
    # What the subject line and any quoted reply are about: usually the ticket's own topic,
    # but an ambiguous ticket must not give its label away through them.
    topic = label if rng.random() < 0.88 else other
    paragraphs: list[str] = []
    if kind < _P_AMBIGUOUS:
        weights, template = rng.choice(_AMBIGUOUS)
        label = rng.choices(list(weights), list(weights.values()))[0]
        topic = rng.choice(list(weights))
        paragraphs.append(template)
    elif kind < _P_SHORT:
        paragraphs.append(rng.choice(_SHORT[label]))
    else:
        main = rng.choice(_TEMPLATES[label])
        if kind < _P_LONG:
            extra = rng.sample(_FILLER, rng.randint(3, 7))
            second = rng.choice(_TEMPLATES[label])
            paragraphs += [extra[0], main, " ".join(extra[1:-1]), second, extra[-1]]
        else:
            paragraphs.append(main)
        if rng.random() < _P_MIXED:
            paragraphs.append(rng.choice(_SECONDARY[other]))
    short = _P_AMBIGUOUS <= kind < _P_SHORT
    body = _render(paragraphs, slots)
    if rng.random() < 0.05:
        body = f"{body.upper()} {rng.choice(_ANGRY)}"
    elif (channel == "chat" or short) and rng.random() < 0.5:
        body = body.lower()
    typo_rate = rng.choice((0.0, 0.0, 0.0, 0.02, 0.05, 0.1))
    if typo_rate:
        body = _typos(rng, body, typo_rate)
    if channel == "chat" or short:
        subject = "" if channel == "chat" else _subject(rng, topic, channel, slots)
        return label, subject, body, channel, slots["email"]
    parts = []
    if rng.random() < 0.65:
        parts.append(_render([rng.choice(_GREETINGS)], slots))
    parts.append(body)
    if rng.random() < 0.6:
        parts.append(_render([rng.choice(_SIGNOFFS).replace("|", "\n")], slots))
    if channel == "email":
        if rng.random() < 0.08:
            role = rng.choice(_SIGNATURE_ROLES)
            area, prefix, line = rng.randint(200, 989), rng.randint(200, 999), rng.randint(0, 9999)
            phone = f"+1 ({area}) {prefix}-{line:04d}"
            parts.append(f"--\n{first} {last}\n{role} | {slots['company']}\n{phone}")
        if rng.random() < 0.12:
            parts.append(rng.choice(_MOBILE))
        if rng.random() < 0.13:
            quote_topic = topic if rng.random() < 0.6 else other
            parts.append(_quoted(rng, quote_topic, slots, created))
    return label, _subject(rng, topic, channel, slots), "\n\n".join(parts), channel, slots["email"]


def _subject(rng: random.Random, label: str, channel: str, slots: dict[str, str]) -> str:
    if channel == "web":
        topic = rng.choice(_FORM_TOPICS)
        return f"Contact form: {topic}"
    roll = rng.random()
    if roll < 0.08:
        return ""
    pool = _GENERIC_SUBJECTS if roll < 0.3 else _SUBJECTS[label]
    return _render([rng.choice(pool)], slots)


def _quoted(rng: random.Random, label: str, slots: dict[str, str], created: datetime) -> str:
    """A previous agent reply quoted under the customer's answer, as mail clients do."""
    sent = created - timedelta(days=rng.randint(1, 6), minutes=rng.randint(0, 600))
    header = (
        f"On {_WEEKDAYS[sent.weekday()]}, {sent.day} {_MONTHS[sent.month - 1]} {sent.year} at "
        f"{sent.hour}:{sent.minute:02d}, {STORE} Support <support@{STORE.lower()}.com> wrote:"
    )
    lines = [
        f"Hi {slots['first']},",
        "",
        _render([rng.choice(_AGENT_QUOTES[label] + _AGENT_GENERIC)], slots),
        "",
        "Kind regards,",
        f"{rng.choice(_AGENTS)}",
        f"{STORE} Customer Care",
    ]
    return header + "\n" + "\n".join(f"> {line}".rstrip() for line in lines)


def _render(paragraphs: Sequence[str], slots: dict[str, str]) -> str:
    return "\n\n".join(p.format_map(slots) for p in paragraphs)


def _typos(rng: random.Random, text: str, rate: float) -> str:
    """Swap, drop, double or fat-finger letters in a share of the longer words."""
    words = text.split(" ")
    for i, word in enumerate(words):
        if len(word) < 4 or not word.isalpha() or rng.random() >= rate:
            continue
        pos = rng.randrange(1, len(word) - 1)
        op = rng.random()
        if op < 0.35:
            word = word[:pos] + word[pos + 1] + word[pos] + word[pos + 2 :]
        elif op < 0.65:
            word = word[:pos] + word[pos + 1 :]
        elif op < 0.8:
            word = word[:pos] + word[pos] + word[pos:]
        else:
            near = _KEYBOARD_NEIGHBOURS.get(word[pos].lower())
            if near:
                word = word[:pos] + rng.choice(near) + word[pos + 1 :]
        words[i] = word
    return " ".join(words)


def _slots(rng: random.Random, first: str, last: str, created: datetime) -> dict[str, str]:
    """Values for every {placeholder} the templates use, drawn once per ticket."""

    def order() -> str:
        style = rng.random()
        if style < 0.55:
            return f"#A{rng.randint(10000, 99999)}"
        if style < 0.75:
            return f"A{rng.randint(10000, 99999)}"
        if style < 0.9:
            return f"#{rng.randint(1000000, 1999999)}"
        return f"no. {rng.randint(10000000, 99999999)}"

    symbol = rng.choices(("$", "£", "€"), (70, 15, 15))[0]

    def amount() -> str:
        return f"{symbol}{rng.choice((rng.uniform(4, 60), rng.uniform(20, 400))):.2f}"

    def date() -> str:
        day = created + timedelta(days=rng.randint(-14, 10))
        style = rng.random()
        if style < 0.5:
            return f"{_MONTH_NAMES[day.month - 1]} {day.day}"
        if style < 0.75:
            return f"{day.month}/{day.day}"
        return _DAY_NAMES[day.weekday()]

    number = rng.randint(1, 99)
    handle = rng.choice(
        (f"{first}.{last}", f"{first}{last[0]}", f"{first[0]}{last}", f"{first}{number}")
    )
    clean = "".join(c for c in handle.lower() if c.isalnum() or c == ".")
    mail = f"{clean}@{rng.choice(_MAIL_DOMAINS)}"
    size, size2 = rng.sample(_SIZES, 2)
    product, product2 = rng.sample(_PRODUCTS, 2)
    apt = rng.randint(1, 40)
    return {
        "order": order(),
        "order2": order(),
        "product": product,
        "product2": product2,
        "amount": amount(),
        "amount2": amount(),
        "date": date(),
        "date2": date(),
        "carrier": rng.choice(_CARRIERS),
        "tracking": f"1Z{rng.randint(100, 999)}E{rng.randint(10**9, 10**10 - 1)}",
        "city": rng.choice(_CITIES),
        "country": rng.choice(_COUNTRIES),
        "color": rng.choice(_COLORS),
        "size": size,
        "size2": size2,
        "device": rng.choice(_DEVICES),
        "browser": rng.choice(_BROWSERS),
        "version": f"{rng.randint(4, 6)}.{rng.randint(0, 12)}.{rng.randint(0, 9)}",
        "code": rng.choice(_CODES),
        "membership": rng.choice(_MEMBERSHIPS),
        "agent": rng.choice(_AGENTS),
        "company": rng.choice(_COMPANIES),
        "address": f"{rng.randint(2, 250)} {rng.choice(_STREETS)}, {rng.choice(_CITIES)}",
        "apt": str(apt),
        "apt2": str(apt + rng.randint(1, 9)),
        "last4": f"{rng.randint(0, 9999):04d}",
        "email": mail,
        "email_old": f"{clean}@{rng.choice(_MAIL_DOMAINS)}",
        "days": str(rng.randint(3, 21)),
        "hours": str(rng.randint(1, 6)),
        "qty": str(rng.randint(2, 4)),
        "n": str(rng.randint(3, 7)),
        "years": str(rng.randint(2, 12)),
        "first": first,
        "last": last,
        "name": f"{first} {last}",
        "store": STORE,
    }


def demo_config_toml() -> str:
    """A complete config for the demo, commented so it doubles as a template to copy."""
    labels = "\n".join(f"{name} = {json.dumps(desc)}" for name, desc in DEMO_LABELS.items())
    return f"""\
# triagedesk demo config. Copy it, change the labels to your own queues, keep what you need.

# The taxonomy: every backend must answer with one of these names. The descriptions go into
# the LLM prompts, so write them the way you would brief a new agent.
[labels]
{labels}

# Which backend routes new tickets, how many tickets a day you expect (for the monthly cost
# projection and break-even), and whose prices give each decision's counterfactual cost.
[routing]
backend = "specialist"
daily_volume = 50000
reference_backend = "gpt-4o-mini"

# A TF-IDF + linear model trained offline on your agents' labels (`triagedesk train`):
# near-zero cost and milliseconds per ticket.
[backends.specialist]
type = "specialist"

# Any OpenAI-compatible endpoint. The key is read from the variable, never from this file.
[backends.gpt-4o-mini]
type = "openai"
base_url = "https://api.openai.com/v1"
model = "gpt-4o-mini"
api_key_env = "OPENAI_API_KEY"
input_usd_per_mtok = 0.15
output_usd_per_mtok = 0.60
timeout_s = 30
max_concurrency = 16

# Anthropic's Messages API; prices are USD per million input / output tokens.
[backends.claude-haiku]
type = "anthropic"
model = "claude-3-5-haiku-latest"
api_key_env = "ANTHROPIC_API_KEY"
input_usd_per_mtok = 0.80
output_usd_per_mtok = 4.00
timeout_s = 30

# A local model served by Ollama. Self-hosted cost is the ticket's share of GPU time.
[backends.llama3]
type = "ollama"
host = "http://127.0.0.1:11434"
model = "llama3.1:8b"
gpu_usd_per_hour = 1.10

# The specialist answers first; tickets it is less than 60% sure about go to gpt-4o-mini.
[backends.cascade]
type = "cascade"
first = "specialist"
then = "gpt-4o-mini"
threshold = 0.6
"""
