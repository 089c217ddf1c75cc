package mgmt

import (
	"encoding/json"
	"net/http"

	"github.com/labstack/echo/v4"
)

type storageResponse struct {
	Rev  int64           `json:"rev"`
	Data json.RawMessage `json:"data,omitempty"`
}

// getStorage shows a live function's webtask storage (what ctx.storage.get
// gives its code) and its revision; writing it is the function's own business.
func (a *API) getStorage(c echo.Context) error {
	tenant, name, err := a.functionAccess(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	if _, err := a.st.GetFunction(ctx, tenant, name); err != nil {
		return storeError(err, functionNotFound(tenant, name), nil)
	}
	st, err := a.st.GetStorage(ctx, tenant, name)
	if err != nil {
		return storeError(err, nil, nil)
	}
	return c.JSON(http.StatusOK, storageResponse{Rev: st.Rev, Data: st.Data})
}
