package delegation

// Answer is a managing entity's answer to a forwarded IQ, unwrapped: what Check needs to
// know of it, on whichever node it was unwrapped.
type Answer struct {
	Host      string // the outer 'to'
	From      string // the outer 'from', as the entity's node vouched for it
	OuterType string // result or error
	Invalid   string // why the wrapping was refused, if it was
	InnerType string
	InnerID   string
	InnerTo   string
	InnerFrom string
}

// Check validates an answer against the IQ it answers (XEP-0355 §5.3). A valid answer
// gives OutcomeResult or OutcomeError and no reason; anything else gives the outcome to
// count (OutcomeInvalid, or OutcomeUnavailable for an outer error) and why it was
// refused: the requester then gets service-unavailable. requesterBare is the requester's
// bare JID (an IQ sent without 'to' stands for it).
func Check(p *Request, a *Answer, requesterBare string) (outcome, why string) {
	switch {
	case a.From != p.Entity || p.Host != a.Host:
		return OutcomeInvalid, "reply from " + a.From + ", not from the entity the IQ went to"
	case a.OuterType == "error":
		return OutcomeUnavailable, "the managing entity answered the forwarded IQ with an error"
	case a.Invalid != "":
		return OutcomeInvalid, a.Invalid
	case a.InnerType != "result" && a.InnerType != "error":
		return OutcomeInvalid, "inner type " + a.InnerType
	case a.InnerID != p.OrigID:
		return OutcomeInvalid, "inner id " + a.InnerID + " is not the original " + p.OrigID
	case a.InnerTo != p.From:
		return OutcomeInvalid, "inner to " + a.InnerTo + " is not the requester " + p.From
	case !innerFromOK(a.InnerFrom, p, a.Host, requesterBare):
		return OutcomeInvalid, "inner from " + a.InnerFrom + " is not " + p.OrigTo
	case a.InnerType == "error":
		return OutcomeError, ""
	}
	return OutcomeResult, ""
}

// innerFromOK: the inner reply's from is absent or the address the requester asked (for
// an IQ without 'to', the server or the requester's own bare JID, which it stands for).
func innerFromOK(from string, p *Request, host, requesterBare string) bool {
	if from == "" || from == p.OrigTo {
		return true
	}
	return p.OrigTo == "" && (from == host || from == requesterBare)
}
